"""Unit tests of llm-finetune / llm-serve settings and of the new contract variables (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workloads.catalog import WORKLOADS, workload_env
from workloads.llm_finetune.model import precision_settings
from workloads.llm_finetune.train import LlmTrainSettings
from workloads.llm_serve.app import LlmServeSettings
from workloads.settings import SettingsError, check_env


def test_defaults_are_the_catalog_entrys_and_paths_derive_from_storage() -> None:
    settings = LlmTrainSettings.from_env({"STORAGE_PATH": "/fsx"})
    assert settings.model_name == "tiny-random" and settings.hf_token is None
    assert settings.seq_len == 64 and settings.max_steps_per_epoch == 0
    # The workload's own defaults, not the contract's dt-pytorch-flavoured ones.
    assert settings.epochs == 4 and settings.batch_size == 8 and settings.run_name == "llm-finetune"
    assert settings.run_dir == Path("/fsx/checkpoints/llm-finetune")
    assert settings.model_path == Path("/fsx/models/llm-latest")
    assert settings.data_dir is None and settings.use_gpu is False
    env = workload_env(WORKLOADS["llm-finetune"], {"STORAGE_PATH": "/fsx"})
    assert LlmTrainSettings.from_env(env) == settings


def test_explicit_values_win() -> None:
    settings = LlmTrainSettings.from_env(
        {
            "STORAGE_PATH": "s3://bucket/prefix",
            "CHECKPOINT_DIR": "/fsx/ckpt",
            "MODEL_NAME": "Qwen/Qwen2.5-0.5B",
            "HF_TOKEN": "hf_secret",
            "SEQ_LEN": "512",
            "MAX_STEPS_PER_EPOCH": "100",
            "USE_GPU": "true",
            "DATA_DIR": "/fsx/text",
            "EPOCHS": "1",
        }
    )
    assert settings.model_name == "Qwen/Qwen2.5-0.5B" and settings.hf_token == "hf_secret"
    assert settings.seq_len == 512 and settings.max_steps_per_epoch == 100 and settings.use_gpu
    assert settings.data_dir == Path("/fsx/text") and settings.epochs == 1
    assert settings.model_path == "s3://bucket/prefix/models/llm-latest"
    assert "hf_secret" not in repr(settings)  # the token never reaches a log line through repr


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SEQ_LEN": "4"}, "SEQ_LEN must be an integer >= 8, got '4'"),
        ({"SEQ_LEN": "long"}, "SEQ_LEN must be an integer >= 8, got 'long'"),
        ({"MAX_STEPS_PER_EPOCH": "-1"}, "MAX_STEPS_PER_EPOCH must be an integer >= 0, got '-1'"),
        ({"MODEL_NAME": "../etc"}, "MODEL_NAME must be tiny-random, a Hugging Face hub id"),
        ({"MODEL_NAME": "a/b/c"}, "got 'a/b/c'"),
        ({"MODEL_NAME": "relative/dir/x"}, "or an absolute path"),
        ({"DATA_DIR": "text"}, "DATA_DIR must be an absolute path, got 'text'"),
        ({"RUN_NAME": "a/b"}, "RUN_NAME must be a plain directory name"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        LlmTrainSettings.from_env({"STORAGE_PATH": "/fsx", **env})
    assert str(caught.value).startswith(f"{next(iter(env))} must be ") and fragment in str(caught.value)
    # The CLI's pre-submission check refuses the same value with the same message.
    with pytest.raises(SettingsError) as checked:
        check_env(env)
    assert str(checked.value) == str(caught.value)


def test_s3_checkpoints_are_refused_with_the_fix() -> None:
    with pytest.raises(SettingsError) as caught:
        LlmTrainSettings.from_env({"STORAGE_PATH": "s3://bucket/prefix"})
    message = str(caught.value)
    assert message.startswith("CHECKPOINT_DIR must be a directory every worker mounts")
    assert "'s3://bucket/prefix/checkpoints'" in message and "set CHECKPOINT_DIR=/fsx/checkpoints" in message


@pytest.mark.parametrize(
    "value", ["tiny-random", "gpt2", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "/fsx/m"]
)
def test_model_names_accepted(value: str) -> None:
    assert LlmTrainSettings.from_env({"STORAGE_PATH": "/fsx", "MODEL_NAME": value}).model_name == value


def test_gpu_precision_is_bf16_compute_fp32_reduce_over_nccl() -> None:
    gpu = precision_settings(True)
    assert gpu.device_type == "cuda" and gpu.backend == "nccl"
    assert gpu.param_dtype is torch.bfloat16 and gpu.reduce_dtype is torch.float32


def test_cpu_precision_is_fp32_over_gloo() -> None:
    cpu = precision_settings(False)
    assert cpu.device_type == "cpu" and cpu.backend == "gloo"
    assert cpu.param_dtype is torch.float32 and cpu.reduce_dtype is torch.float32


def test_serve_model_path_and_id() -> None:
    settings = LlmServeSettings.from_env({"STORAGE_PATH": "/fsx"})
    assert settings.model_path == Path("/fsx/models/llm-latest") and settings.model_id == "llm-latest"
    other = LlmServeSettings.from_env({"STORAGE_PATH": "/fsx", "MODEL_PATH": "s3://b/models/tuned"})
    assert other.model_path == "s3://b/models/tuned" and other.model_id == "tuned"
    with pytest.raises(SettingsError, match="STORAGE_PATH is required"):
        LlmServeSettings.from_env({})
