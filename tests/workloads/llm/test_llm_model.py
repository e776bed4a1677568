"""Unit tests of llm-finetune's on-disk layouts: checkpoint completeness, DCP -> Hugging Face
export, model.json round-trip and the generation used by llm-serve (one process, no Ray)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from workloads.llm_finetune.data import stdlib_docstrings, train_tokenizer
from workloads.llm_finetune.model import (
    DCP_METADATA_FILE,
    EXPORT_META_FILE,
    META_FILE,
    CheckpointMeta,
    ExportMeta,
    ModelNotFoundError,
    checkpoint_dir_name,
    export_checkpoint,
    load_export,
    newest_checkpoint,
    perplexity,
    read_checkpoint_meta,
    read_export_meta,
    tiny_config,
    write_checkpoint_meta,
    write_export_meta,
)
from workloads.llm_serve.app import ApiError, generate, parse_completion_request


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return train_tokenizer(stdlib_docstrings(), vocab_size=2048)


def test_export_meta_round_trips(tmp_path: Path) -> None:
    meta = ExportMeta(
        model_name="tiny-random",
        epoch=3,
        loss=5.5,
        held_out_loss=5.25,
        held_out_perplexity=190.6,
        run_name="r",
    )
    write_export_meta(tmp_path, meta)
    assert read_export_meta(tmp_path) == meta
    assert json.loads((tmp_path / EXPORT_META_FILE).read_text()) == asdict(meta)
    with pytest.raises(ModelNotFoundError, match="run the llm-finetune workload first"):
        read_export_meta(tmp_path / "missing")


def test_only_complete_checkpoints_count(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path / "absent") is None
    meta = CheckpointMeta(epoch=1, model_name="tiny-random", world_size=2, loss=6.0, held_out_loss=5.9)
    for epoch, files in ((1, (DCP_METADATA_FILE, META_FILE)), (2, (DCP_METADATA_FILE,)), (3, (META_FILE,))):
        directory = tmp_path / checkpoint_dir_name(epoch)
        directory.mkdir()
        for name in files:
            if name == META_FILE:
                write_checkpoint_meta(directory, meta)
            else:
                (directory / name).write_bytes(b"")
    (tmp_path / "epoch_x").mkdir()
    (tmp_path / "epoch_0009").write_text("a file, not a checkpoint")
    # epoch 2: shards stored but rank 0 never finished; epoch 3: meta.json without DCP metadata.
    assert newest_checkpoint(tmp_path) == (1, tmp_path / "epoch_0001")
    assert read_checkpoint_meta(tmp_path / "epoch_0001") == meta
    assert not list(tmp_path.glob("epoch_0001/.*.tmp"))  # written atomically, nothing left over
    with pytest.raises(ModelNotFoundError, match=r"meta\.json missing"):
        read_checkpoint_meta(tmp_path / "epoch_0002")


def test_perplexity_is_exp_loss_and_finite() -> None:
    assert perplexity(0.0) == 1.0 and perplexity(2.0) == pytest.approx(7.389, abs=1e-3)
    assert perplexity(1e9) < float("inf")


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_a_sharded_checkpoint_exports_to_a_loadable_hugging_face_directory(
    tokenizer: Any, tmp_path: Path
) -> None:
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(vocab_size=len(tokenizer), seq_len=64))
    checkpoint = tmp_path / "run" / checkpoint_dir_name(4)
    # The layout the workers write: {"model", "optim"} through DCP, then config, tokenizer, meta.json.
    dcp.save({"model": model.state_dict(), "optim": {}}, checkpoint_id=str(checkpoint), no_dist=True)
    model.config.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    write_checkpoint_meta(
        checkpoint,
        CheckpointMeta(epoch=4, model_name="tiny-random", world_size=1, loss=5.0, held_out_loss=4.5),
    )
    assert newest_checkpoint(tmp_path / "run") == (4, checkpoint)

    target = tmp_path / "models" / "llm-latest"
    target.mkdir(parents=True)
    (target / "stale.bin").write_text("replaced atomically")
    exported = export_checkpoint(checkpoint, target, run_name="run")
    assert exported == ExportMeta(
        model_name="tiny-random",
        epoch=4,
        loss=5.0,
        held_out_loss=4.5,
        held_out_perplexity=perplexity(4.5),
        run_name="run",
    )
    names = {path.name for path in target.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", EXPORT_META_FILE} <= names
    assert "stale.bin" not in names and not list(target.parent.glob(".llm-latest-*"))
    loaded, loaded_tokenizer, meta = load_export(target)
    assert meta == exported and len(loaded_tokenizer) == len(tokenizer)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)

    # What llm-serve does with it: greedy is deterministic, a seed makes sampling repeatable.
    request = parse_completion_request(
        {"model": "llm-latest", "prompt": "Return the", "max_tokens": 5, "temperature": 0},
        model_id="llm-latest",
    )
    first, second = generate(loaded, loaded_tokenizer, request), generate(loaded, loaded_tokenizer, request)
    assert first == second and first.prompt_tokens > 0 and 1 <= first.completion_tokens <= 5
    assert first.finish_reason in {"stop", "length"}
    sampled = parse_completion_request(
        {"model": "llm-latest", "prompt": "Return", "max_tokens": 5, "temperature": 1.5, "seed": 11},
        model_id="llm-latest",
    )
    assert generate(loaded, loaded_tokenizer, sampled) == generate(loaded, loaded_tokenizer, sampled)
    too_long = parse_completion_request(
        {"model": "llm-latest", "prompt": "x " * 4000, "max_tokens": 256}, model_id="llm-latest"
    )
    with pytest.raises(ApiError) as caught:
        generate(loaded, loaded_tokenizer, too_long)
    assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"
