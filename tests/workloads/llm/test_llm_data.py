"""Unit tests of llm-finetune's text, tokenizer and blocks: offline and deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workloads.llm_finetune.data import (
    END_OF_TEXT,
    STDLIB_MODULES,
    DataError,
    split_blocks,
    stdlib_docstrings,
    text_files,
    token_blocks,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return stdlib_docstrings()


@pytest.fixture(scope="module")
def tokenizer(documents: list[str]) -> Any:
    return train_tokenizer(documents, vocab_size=2048)


def test_docstrings_are_the_fixed_modules_in_a_fixed_order(documents: list[str]) -> None:
    import argparse
    import inspect
    import json
    import textwrap

    assert documents == stdlib_docstrings()
    assert len(documents) > 100 and sum(map(len, documents)) > 50_000
    assert STDLIB_MODULES[0] == "argparse" and documents[0] == inspect.getdoc(argparse)
    assert inspect.getdoc(textwrap.dedent) in documents and inspect.getdoc(json) in documents
    assert inspect.getdoc(json.dumps) in documents
    # Only objects defined in the module itself: json.JSONDecoder is json.decoder's (a re-export).
    assert inspect.getdoc(json.JSONDecoder) not in documents


def test_tokenizer_is_deterministic_byte_level_bpe(documents: list[str], tokenizer: Any) -> None:
    again = train_tokenizer(documents, vocab_size=2048)
    assert len(tokenizer) == len(again) == 2048
    assert tokenizer.get_vocab() == again.get_vocab()
    sample = "Return a new list containing all items from the iterable — ünïcode too."
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    assert ids == again(sample, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == sample  # byte-level: lossless
    assert tokenizer.eos_token == tokenizer.pad_token == END_OF_TEXT


def test_tokenizer_round_trips_through_save_pretrained(tokenizer: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "def f(x):\n    return x"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.eos_token_id == tokenizer.eos_token_id


def test_blocks_cover_the_stream_and_split_deterministically(documents: list[str], tokenizer: Any) -> None:
    blocks = token_blocks(tokenizer, documents, seq_len=64)
    assert blocks.dtype == np.int64 and blocks.shape[1] == 64 and len(blocks) > 200
    eos = tokenizer.eos_token_id
    assert int((blocks == eos).sum()) >= len(documents) - 1  # documents are separated
    train, held_out = split_blocks(blocks, seed=0)
    assert len(held_out) == round(len(blocks) * 0.1) and len(train) + len(held_out) == len(blocks)
    train2, held_out2 = split_blocks(blocks, seed=0)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(held_out, held_out2)
    other, _ = split_blocks(blocks, seed=1)
    assert not np.array_equal(train, other)
    rows = {row.tobytes() for row in blocks}
    assert {row.tobytes() for row in train} | {row.tobytes() for row in held_out} <= rows


def test_text_files_replace_the_docstrings(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "skip.md").write_text("not text")
    assert text_files(tmp_path) == ["first", "second"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"holds no \*\.txt files"):
        text_files(empty)
    with pytest.raises(DataError, match=r"is not a directory$"):
        text_files(tmp_path / "missing")
