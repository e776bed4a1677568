"""Typed, validated reading of the workload environment contract (standard library only).

Workloads build their settings with :class:`EnvReader`, which only accepts names from
:data:`workloads.catalog.ENV_CONTRACT`, applies the contract defaults and turns bad values into a
:class:`SettingsError` whose message names the variable, the bad value and what is expected.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from workloads.catalog import DATASETS, contract_default
from workloads.storage import Location, join

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
"""A Hugging Face repository id: ``name`` or ``owner/name`` (no ``..``, no further slashes)."""
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def positive_number(text: str) -> float | None:
    """``text`` as a finite number > 0, else ``None`` (not a number, nan, inf, zero or below)."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


class SettingsError(ValueError):
    """A contract variable is missing or has a value the workload cannot use."""


class EnvReader:
    """Reads contract variables from ``environ`` (default: ``os.environ``)."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, defaults: Mapping[str, str] | None = None
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._defaults: Mapping[str, str] = defaults or {}
        """A workload's own defaults (its catalog ``env_defaults``), ahead of the contract's."""

    def raw(self, name: str) -> str | None:
        """The value of ``name`` (the workload's, else the contract's default when unset or empty);
        ``None`` if none of them."""
        try:
            default = contract_default(name)
        except KeyError:
            raise SettingsError(f"{name} is not part of the workload env contract") from None
        value = self._environ.get(name, "").strip()
        return value if value else self._defaults.get(name, default)

    def string(self, name: str) -> str:
        """A required string."""
        value = self.raw(name)
        if value is None:
            raise SettingsError(f"{name} is required but not set")
        return value

    def integer(self, name: str, *, minimum: int) -> int:
        """An integer >= ``minimum``."""
        value = self.string(name)
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
        if number < minimum:
            raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return number

    def positive_float(self, name: str) -> float:
        """A finite number > 0."""
        value = self.string(name)
        number = positive_number(value)
        if number is None:
            raise SettingsError(f"{name} must be a number > 0, got {value!r}")
        return number

    def boolean(self, name: str) -> bool:
        """``true``/``false`` (also 1/0, yes/no, on/off), case-insensitive."""
        value = self.string(name)
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise SettingsError(f"{name} must be true or false, got {value!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``."""
        value = self.string(name)
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    def path(self, name: str, *, derived: Callable[[], Path] | None = None) -> Path:
        """An absolute path; when unset, ``derived()`` (e.g. a directory under STORAGE_PATH)."""
        value = self.raw(name)
        if value is None:
            if derived is None:
                raise SettingsError(f"{name} is required but not set")
            return derived()
        path = Path(value)
        if not path.is_absolute():
            raise SettingsError(f"{name} must be an absolute path, got {value!r}")
        return path

    def plain_name(self, name: str) -> str:
        """A plain directory name (no ``/``, not ``.`` or ``..``)."""
        value = self.string(name)
        if "/" in value or value in {".", ".."}:
            raise SettingsError(f"{name} must be a plain directory name, got {value!r}")
        return value

    def location(self, name: str, *, derived: Callable[[], Location] | None = None) -> Location:
        """An absolute path (``Path``) or an ``s3://bucket/...`` URI (``str``); see storage.py."""
        value = self.raw(name)
        if value is None:
            if derived is None:
                raise SettingsError(f"{name} is required but not set")
            return derived()
        if "://" in value:
            scheme, _, rest = value.partition("://")
            if scheme != "s3" or not rest.split("/", 1)[0]:
                raise SettingsError(f"{name} must be an absolute path or s3://bucket/prefix, got {value!r}")
            return value.rstrip("/")
        path = Path(value)
        if not path.is_absolute():
            raise SettingsError(f"{name} must be an absolute path or s3://bucket/prefix, got {value!r}")
        return path

    def model_name(self, name: str) -> str:
        """A model reference: ``tiny-random``, a hub id (``org/name`` or ``name``) or an absolute path."""
        value = self.string(name)
        if value.startswith("/") or _HUB_ID.fullmatch(value):
            return value
        raise SettingsError(
            f"{name} must be tiny-random, a Hugging Face hub id such as org/model, or an absolute path, "
            f"got {value!r}"
        )

    def storage_path(self) -> Location:
        """``STORAGE_PATH`` (required by every workload with ``needs_storage``)."""
        return self.location("STORAGE_PATH")

    def storage_subdir(self, *parts: str) -> Callable[[], Location]:
        """A ``derived`` callable for ``STORAGE_PATH/<parts>``."""
        return lambda: join(self.storage_path(), *parts)

    def data_subdir(self, *parts: str) -> Callable[[], Path]:
        """A ``derived`` callable for a local data directory: ``STORAGE_PATH/<parts>`` when
        STORAGE_PATH is a mounted path, a per-node cache under the temp dir when it is a URI."""

        def derive() -> Path:
            storage = self.storage_path()
            if isinstance(storage, Path):
                return storage.joinpath(*parts)
            return Path(tempfile.gettempdir(), "ray-on-eks-data", *parts)

        return derive


_CHECKS: dict[str, Callable[[EnvReader, str], object]] = {
    "STORAGE_PATH": lambda env, name: env.location(name),
    "NUM_WORKERS": lambda env, name: env.integer(name, minimum=1),
    "CPUS_PER_WORKER": lambda env, name: env.positive_float(name),
    "USE_GPU": lambda env, name: env.boolean(name),
    "EPOCHS": lambda env, name: env.integer(name, minimum=1),
    "BATCH_SIZE": lambda env, name: env.integer(name, minimum=1),
    "LEARNING_RATE": lambda env, name: env.positive_float(name),
    "DATASET": lambda env, name: env.choice(name, DATASETS),
    "DATA_DIR": lambda env, name: env.path(name),
    "SEED": lambda env, name: env.integer(name, minimum=0),
    "RUN_NAME": lambda env, name: env.plain_name(name),
    "CHECKPOINT_DIR": lambda env, name: env.location(name),
    "MAX_FAILURES": lambda env, name: env.integer(name, minimum=0),
    "PAUSE_AFTER_EPOCH": lambda env, name: env.integer(name, minimum=0),
    "PAUSE_SECONDS": lambda env, name: env.integer(name, minimum=0),
    "MODEL_PATH": lambda env, name: env.location(name),
    "OUTPUT_PATH": lambda env, name: env.location(name),
    # --- dt-pytorch training overhead (perf-train) ---
    "DATA_REPEATS": lambda env, name: env.integer(name, minimum=1),
    "CHECKPOINT_EVERY": lambda env, name: env.integer(name, minimum=1),
    # --- image-train / image-serve ---
    "IMAGE_DATA": lambda env, name: env.location(name),
    "IMAGE_SIZE": lambda env, name: env.integer(name, minimum=16),
    # --- llm-finetune / llm-serve ---
    "MODEL_NAME": lambda env, name: env.model_name(name),
    "HF_TOKEN": lambda env, name: env.raw(name),
    "SEQ_LEN": lambda env, name: env.integer(name, minimum=8),
    "MAX_STEPS_PER_EPOCH": lambda env, name: env.integer(name, minimum=0),
}
"""How each contract variable is parsed (the same :class:`EnvReader` calls the workloads make)."""


def check_env(environ: Mapping[str, str]) -> None:
    """Validate every contract variable set in ``environ`` before anything is submitted.

    Raises :class:`SettingsError` for the first bad value, with the message the workload itself
    would print, so ``run``/``submit`` refuse ``EPOCHS=abc`` instead of submitting a doomed job.
    """
    reader = EnvReader(environ)
    for name in environ:
        check = _CHECKS.get(name)
        if check is None:
            raise SettingsError(f"{name} is not part of the workload env contract")
        if environ[name].strip():
            check(reader, name)


def exit_on_settings_error(error: SettingsError) -> NoReturn:
    """Print a one-line configuration error (no traceback) and exit with status 2."""
    print(f"configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def default_ray_env(name: str, value: str) -> str:
    """Give a Ray tuning variable (not part of the contract) ``value`` in this process unless it is set.

    The one place besides :class:`EnvReader` where a workload touches its environment: a job may
    tune how Ray itself behaves for it (e.g. Ray Train's controller poll), while a value set in the
    job's environment (the pod, ``ray job submit --runtime-env``) still wins. Returns the value in
    effect.
    """
    if not name.startswith("RAY_"):
        raise ValueError(f"default_ray_env sets Ray's own variables (RAY_*), got {name!r}")
    return os.environ.setdefault(name, value)
