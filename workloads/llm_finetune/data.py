"""llm-finetune's training text, tokenizer and token blocks.

Offline by default: the text is the docstrings of a fixed list of Python standard-library modules
(every Ray node has them, and the same Python gives the same text), and the tiny model's tokenizer
is a byte-level BPE trained from that text with ``tokenizers``. Everything here is deterministic,
so the driver, a restarted worker group and a later job with the same RUN_NAME see the same
vocabulary and the same train/held-out blocks. With DATA_DIR set explicitly, the ``*.txt`` files
under it (sorted by path) replace the docstrings.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

STDLIB_MODULES: tuple[str, ...] = (
    "argparse",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "csv",
    "dataclasses",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "json",
    "shlex",
    "statistics",
    "string",
    "textwrap",
)
"""Modules whose docstrings are the default training text (importing them has no side effects)."""

END_OF_TEXT = "<|endoftext|>"
"""Separator between documents; also the tokenizer's end-of-sequence and padding token."""
HELD_OUT_FRACTION = 0.1


class DataError(ValueError):
    """The training text is missing or too small for the requested run."""


def stdlib_docstrings(modules: Sequence[str] = STDLIB_MODULES) -> list[str]:
    """The docstrings of ``modules`` and of their public classes and functions, in a fixed order.

    Only objects defined in the module itself are taken (no re-exports), sorted by name.
    """
    documents: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        doc = inspect.getdoc(module)
        if doc:
            documents.append(doc)
        for attribute in sorted(vars(module)):
            if attribute.startswith("_"):
                continue
            value = getattr(module, attribute)
            if not (inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value)):
                continue
            if getattr(value, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(value)
            if doc:
                documents.append(doc)
    return documents


def text_files(directory: Path) -> list[str]:
    """The ``*.txt`` files under ``directory`` (recursively, sorted by path), one document each."""
    if not directory.is_dir():
        raise DataError(f"DATA_DIR {directory} is not a directory")
    documents = [path.read_text(encoding="utf-8") for path in sorted(directory.rglob("*.txt"))]
    if not documents:
        raise DataError(f"DATA_DIR {directory} holds no *.txt files; put training text there")
    return documents


def train_tokenizer(documents: Sequence[str], *, vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``documents``, as a ``PreTrainedTokenizerFast``.

    Byte-level: every string encodes (no unknown token) and decodes back exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(documents), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        clean_up_tokenization_spaces=False,
    )


def token_blocks(tokenizer: Any, documents: Sequence[str], *, seq_len: int) -> np.ndarray:
    """The documents as one token stream (separated by the end-of-sequence token), cut into
    ``(n, seq_len)`` int64 blocks; the tail shorter than a block is dropped."""
    separator = tokenizer.eos_token_id
    stream: list[int] = []
    for document in documents:
        stream.extend(tokenizer(document, add_special_tokens=False)["input_ids"])
        if separator is not None:
            stream.append(int(separator))
    count = len(stream) // seq_len
    return np.asarray(stream[: count * seq_len], dtype=np.int64).reshape(count, seq_len)


def split_blocks(blocks: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held_out)``: a seeded permutation, :data:`HELD_OUT_FRACTION` held out (at least one)."""
    order = np.random.default_rng(seed).permutation(len(blocks))
    held = max(1, round(len(blocks) * HELD_OUT_FRACTION))
    return blocks[order[held:]], blocks[order[:held]]
