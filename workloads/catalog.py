"""The workload catalog: one table that the job CLI and the KubeRay builders share.

Import-light on purpose (standard library only): the Pulumi program imports this module to build
RayJobs, RayServices and the ConfigMaps that carry the workload code, so it must not pull in Ray,
torch or scikit-learn.

The environment-variable contract (:data:`ENV_CONTRACT`) is the *only* way a workload is
parameterised. A workload reads nothing else from its environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

CODE_ROOT = "/opt/ray-on-eks"
"""Directory put on ``PYTHONPATH`` in every Ray container of the cluster."""

WORKLOADS_MOUNT_PATH = "/opt/ray-on-eks/workloads"
"""Where the workload ConfigMap files are mounted (same layout as the repo's ``workloads/``)."""


DATASETS: tuple[str, ...] = ("digits", "fashion-mnist")
"""Values of the DATASET variable (``workloads.dt_pytorch.data`` loads each)."""


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    """One variable of the workload environment contract."""

    name: str
    description: str
    default: str | None
    """Value used when the variable is unset; ``None`` means "required" or "derived"."""
    secret: bool = False
    """A credential: stack config may only reference it from a Kubernetes Secret (``secretEnv``)."""


ENV_CONTRACT: tuple[EnvVar, ...] = (
    EnvVar(
        name="STORAGE_PATH",
        description=(
            "Root of the shared storage: a path every Ray pod mounts (FSx for Lustre at /fsx on the "
            "cluster; <repo>/.ray-on-eks/storage for local runs) or an s3://bucket/prefix URI (read "
            "and written through pyarrow with the pod's AWS credentials; AWS_ENDPOINT_URL is honoured). "
            "Required by workloads with needs_storage."
        ),
        default=None,
    ),
    EnvVar(
        name="NUM_WORKERS",
        description="Number of Ray Train workers (distributed data-parallel processes), integer >= 1.",
        default="2",
    ),
    EnvVar(
        name="CPUS_PER_WORKER",
        description="CPUs reserved by each Ray Train worker, number > 0.",
        default="1",
    ),
    EnvVar(
        name="USE_GPU",
        description="Give each Ray Train worker one GPU (true/false).",
        default="false",
    ),
    EnvVar(
        name="EPOCHS",
        description="Number of training epochs, integer >= 1.",
        default="10",
    ),
    EnvVar(
        name="BATCH_SIZE",
        description="Per-worker training batch size (batch-inference: rows per model forward), integer >= 1.",
        default="32",
    ),
    EnvVar(
        name="LEARNING_RATE",
        description="Adam learning rate, number > 0.",
        default="0.003",
    ),
    EnvVar(
        name="DATASET",
        description=(
            "Training data set: 'digits' (scikit-learn's bundled 8x8 digits, offline) or "
            "'fashion-mnist' (IDX files from DATA_DIR, downloaded there if missing)."
        ),
        default="digits",
    ),
    EnvVar(
        name="DATA_DIR",
        description=(
            "Local directory with the fashion-mnist IDX .gz files. Derived: STORAGE_PATH/datasets/fashion-mnist "
            "(a per-node cache under the temp directory when STORAGE_PATH is an s3:// URI). "
            "llm-finetune: when set, the *.txt files under it are the training text instead of the "
            "standard-library docstrings."
        ),
        default=None,
    ),
    EnvVar(
        name="SEED",
        description="Seed for the train/held-out split, shuffling and model initialisation.",
        default="0",
    ),
    EnvVar(
        name="RUN_NAME",
        description="Ray Train run name; checkpoints go to CHECKPOINT_DIR/RUN_NAME.",
        default="dt-pytorch",
    ),
    EnvVar(
        name="CHECKPOINT_DIR",
        description=(
            "Ray Train storage path (run directories with per-epoch checkpoints). "
            "Derived: STORAGE_PATH/checkpoints."
        ),
        default=None,
    ),
    EnvVar(
        name="MAX_FAILURES",
        description=(
            "Worker-group restarts Ray Train allows before failing the run (FailureConfig), integer >= 0."
        ),
        default="3",
    ),
    EnvVar(
        name="PAUSE_AFTER_EPOCH",
        description=(
            "Fault-injection aid: after this epoch's checkpoint is stored, every worker of a run that "
            "reached it by training (not by resuming past it) prints 'paused after epoch N' and waits "
            "PAUSE_SECONDS, so a worker can be killed while epochs remain; 0 = never, integer >= 0."
        ),
        default="0",
    ),
    EnvVar(
        name="PAUSE_SECONDS",
        description="How long the PAUSE_AFTER_EPOCH pause lasts, integer >= 0 seconds.",
        default="120",
    ),
    EnvVar(
        name="MODEL_PATH",
        description=(
            "Directory of the exported model that training writes and the services load. Derived: per "
            "workload, STORAGE_PATH/models/latest (dt-pytorch model.pt + model.json; serve, "
            "batch-inference), STORAGE_PATH/models/image-latest (image-train, image-serve), "
            "STORAGE_PATH/models/llm-latest (llm-finetune: Hugging Face save_pretrained directory + "
            "model.json; llm-serve)."
        ),
        default=None,
    ),
    EnvVar(
        name="OUTPUT_PATH",
        description="Directory batch-inference writes its predictions to. Derived: STORAGE_PATH/predictions.",
        default=None,
    ),
    # --- dt-pytorch training overhead (perf-train) ---
    EnvVar(
        name="DATA_REPEATS",
        description=(
            "dt-pytorch: enlarge the training split to this many copies of each image, the extra copies "
            "shifted by up to one pixel (seeded); the held-out set is unchanged. For longer epochs in "
            "benchmarks; 1 = the plain set, integer >= 1."
        ),
        default="1",
    ),
    EnvVar(
        name="CHECKPOINT_EVERY",
        description=(
            "dt-pytorch: write a checkpoint (and call ray.train.report) every N epochs, plus the last "
            "epoch and PAUSE_AFTER_EPOCH; the epochs in between only log their metrics. Each report "
            "waits for Ray Train's controller poll (every 0.25 s, set by the job; Ray's default is 2 s) "
            "once the previous one is unread, and every checkpoint is a write, so short epochs run "
            "faster with N > 1; a failure then loses up to N - 1 epochs. Integer >= 1."
        ),
        default="1",
    ),
    # --- image-train / image-serve (issue 18) ---
    EnvVar(
        name="IMAGE_DATA",
        description=(
            "image-train: image data set, a directory (or s3:// URI) with train/<class>/*.png|jpg and "
            "test/<class>/*.png|jpg. Derived: STORAGE_PATH/datasets/digits-png, where scikit-learn's "
            "digits are written as PNGs on first use (offline); set it to train on your own images."
        ),
        default=None,
    ),
    EnvVar(
        name="IMAGE_SIZE",
        description=(
            "image-train: side in pixels every image is resized to (bilinear) before the model; the "
            "exported model.json records it and image-serve resizes requests the same way. 32 suits the "
            "upscaled digits, 224 real photographs. Integer >= 16."
        ),
        default="32",
    ),
    # --- secrets (issue 18) ---
    EnvVar(
        name="HF_TOKEN",
        description=(
            "Hugging Face access token for gated models and private data (llm-finetune's MODEL_NAME). "
            "Never a literal in stack config: rayJobs[].secretEnv maps it to a Kubernetes Secret key "
            "(secretKeyRef on the job's Ray pods); unset = anonymous downloads."
        ),
        default=None,
        secret=True,
    ),
    # --- llm-finetune / llm-serve ---
    EnvVar(
        name="MODEL_NAME",
        description=(
            "llm-finetune: the causal language model to fine-tune: 'tiny-random' (a built-in tiny "
            "Llama, randomly initialised, with a byte-level BPE tokenizer trained on the text; no "
            "download), a Hugging Face hub id (e.g. 'Qwen/Qwen2.5-0.5B') or an absolute path to a "
            "save_pretrained directory (e.g. under STORAGE_PATH)."
        ),
        default="tiny-random",
    ),
    EnvVar(
        name="SEQ_LEN",
        description="llm-finetune: tokens per training sequence (block), integer >= 8.",
        default="64",
    ),
    EnvVar(
        name="MAX_STEPS_PER_EPOCH",
        description=(
            "llm-finetune: cap on the optimizer steps each worker takes per epoch (a slice of the "
            "text per epoch for large data sets); 0 = the whole training split, integer >= 0."
        ),
        default="0",
    ),
)

_CONTRACT_BY_NAME: Mapping[str, EnvVar] = MappingProxyType({var.name: var for var in ENV_CONTRACT})


def contract_default(name: str) -> str | None:
    """The contract default of ``name``; raises ``KeyError`` for a name outside the contract."""
    return _CONTRACT_BY_NAME[name].default


def _defaults(*names: str) -> Mapping[str, str]:
    """Frozen mapping of the contract defaults of ``names`` (each must have a default)."""
    values: dict[str, str] = {}
    for name in names:
        default = _CONTRACT_BY_NAME[name].default
        if default is None:
            raise ValueError(f"{name} has no contract default")
        values[name] = default
    return MappingProxyType(values)


@dataclass(frozen=True, kw_only=True)
class ServeApp:
    """How a service workload runs as a Ray Serve application (one per RayService on a cluster).

    Locally every service shares one Serve instance, so each catalog service has its own
    ``route_prefix`` and the CLI keeps the others running when it deploys one.
    """

    app_name: str
    import_path: str
    """``module:attribute`` of the bound application."""
    deployment_name: str
    route_prefix: str = "/"
    num_cpus_per_replica: float = 0.5
    health_path: str = "/healthz"
    examples: tuple[str, ...] = ()
    """Shell commands the CLI prints once the app runs; ``{url}`` is the app's URL (prefix included)."""

    def url(self, serve_root: str) -> str:
        """The app's URL under Serve's HTTP root ``serve_root`` (``http://host:port``)."""
        return serve_root.rstrip("/") + self.route_prefix.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A Ray program the cluster can run, and what it needs to run there."""

    name: str
    kind: Literal["job", "service"]
    module: str
    files: tuple[str, ...]
    """Repo-relative paths of every ``workloads/`` file the module imports at run time."""
    env_defaults: Mapping[str, str]
    pip: tuple[str, ...]
    """Pinned packages the stock rayproject/ray image lacks (for the cluster runtime_env)."""
    needs_storage: bool
    description: str
    command: str | None = None
    """A shell command instead of ``python -m module`` (the user's own code from stack config)."""
    open_env: bool = False
    """Accept any env names (own code); catalog workloads accept only :data:`ENV_CONTRACT` names."""
    serve_app: ServeApp | None = None
    """The Serve application of a catalog service (``None`` for jobs and own-code services)."""

    def entrypoint(self) -> str:
        """The command that starts the workload (RayJob entrypoint, local job entrypoint)."""
        return self.command or f"python -m {self.module}"


_PACKAGE_FILES = (
    "workloads/__init__.py",
    "workloads/catalog.py",
    "workloads/settings.py",
    "workloads/storage.py",
)
_MODEL_FILES = (
    "workloads/model_store.py",
    "workloads/dt_pytorch/__init__.py",
    "workloads/dt_pytorch/data.py",
    "workloads/dt_pytorch/model.py",
)
_TORCH_PIP = ("torch==2.14.1", "scikit-learn==1.9.1")
_IMAGE_FILES = (
    "workloads/image_train/__init__.py",
    "workloads/image_train/data.py",
    "workloads/image_train/model.py",
)
_IMAGE_PIP = (*_TORCH_PIP, "torchvision==0.29.1")
_LLM_PIP = ("torch==2.14.1", "transformers==5.24.0", "tokenizers==0.23.3", "safetensors==0.8.0")
_LLM_MODEL_FILES = (
    "workloads/llm_finetune/__init__.py",
    "workloads/llm_finetune/model.py",
)

WORKLOADS: Mapping[str, Workload] = MappingProxyType(
    {
        workload.name: workload
        for workload in (
            Workload(
                name="quickstart",
                kind="job",
                module="workloads.quickstart.main",
                files=(*_PACKAGE_FILES, "workloads/quickstart/__init__.py", "workloads/quickstart/main.py"),
                env_defaults=MappingProxyType({}),
                pip=(),
                needs_storage=False,
                description=(
                    "Prints the cluster resources, runs a few remote tasks and an actor, checks results."
                ),
            ),
            Workload(
                name="dt-pytorch",
                kind="job",
                module="workloads.dt_pytorch.train",
                files=(
                    *_PACKAGE_FILES,
                    *_MODEL_FILES,
                    "workloads/train_common.py",
                    "workloads/dt_pytorch/train.py",
                ),
                env_defaults=_defaults(
                    "NUM_WORKERS",
                    "CPUS_PER_WORKER",
                    "USE_GPU",
                    "EPOCHS",
                    "BATCH_SIZE",
                    "LEARNING_RATE",
                    "DATASET",
                    "SEED",
                    "RUN_NAME",
                    "MAX_FAILURES",
                    "PAUSE_AFTER_EPOCH",
                    "PAUSE_SECONDS",
                ),
                pip=_TORCH_PIP,
                needs_storage=True,
                description=(
                    "Ray Train TorchTrainer (DDP) MLP classifier; per-epoch checkpoints under "
                    "CHECKPOINT_DIR, resumes from the newest one, exports the model to MODEL_PATH."
                ),
            ),
            Workload(
                name="serve",
                kind="service",
                module="workloads.serve.app",
                files=(
                    *_PACKAGE_FILES,
                    *_MODEL_FILES,
                    "workloads/http_limits.py",
                    "workloads/serve/__init__.py",
                    "workloads/serve/app.py",
                    "workloads/serving.py",
                    "workloads/serve/config.py",
                ),
                env_defaults=MappingProxyType({}),
                pip=_TORCH_PIP,
                needs_storage=True,
                serve_app=ServeApp(
                    app_name="classifier",
                    import_path="workloads.serve.app:app",
                    deployment_name="Classifier",
                ),
                description=(
                    "Ray Serve HTTP app: POST /predict with the newest trained model from MODEL_PATH, "
                    "GET /healthz."
                ),
            ),
            Workload(
                name="image-train",
                kind="job",
                module="workloads.image_train.train",
                files=(
                    *_PACKAGE_FILES,
                    *_MODEL_FILES,
                    *_IMAGE_FILES,
                    "workloads/train_common.py",
                    "workloads/image_train/train.py",
                ),
                env_defaults=MappingProxyType(
                    {
                        **_defaults(
                            "NUM_WORKERS",
                            "CPUS_PER_WORKER",
                            "USE_GPU",
                            "SEED",
                            "MAX_FAILURES",
                            "IMAGE_SIZE",
                        ),
                        # ResNet-18 on CPU: a few epochs reach > 90 % on the digits.
                        "EPOCHS": "4",
                        "BATCH_SIZE": "64",
                        "LEARNING_RATE": "0.001",
                        "RUN_NAME": "image-train",
                    }
                ),
                pip=_IMAGE_PIP,
                needs_storage=True,
                description=(
                    "Ray Data reads class-folder images from IMAGE_DATA (digits PNGs generated locally) "
                    "and streams them into a Ray Train (DDP) ResNet-18; per-epoch checkpoints and resume "
                    "as dt-pytorch; exports to STORAGE_PATH/models/image-latest."
                ),
            ),
            Workload(
                name="image-serve",
                kind="service",
                module="workloads.image_serve.app",
                files=(
                    *_PACKAGE_FILES,
                    *_MODEL_FILES,
                    *_IMAGE_FILES,
                    "workloads/http_limits.py",
                    "workloads/serving.py",
                    "workloads/image_serve/__init__.py",
                    "workloads/image_serve/app.py",
                ),
                env_defaults=MappingProxyType({}),
                pip=_IMAGE_PIP,
                needs_storage=True,
                serve_app=ServeApp(
                    app_name="image",
                    import_path="workloads.image_serve.app:app",
                    deployment_name="ImageClassifier",
                    route_prefix="/image",
                    examples=(
                        "curl -s -H 'Content-Type: image/png' --data-binary "
                        "@.ray-on-eks/storage/datasets/digits-png/test/7/00000.png {url}/predict",
                    ),
                ),
                description=(
                    "Ray Serve HTTP app: POST /image/predict with PNG/JPEG bytes (byte- and pixel-limited, "
                    "dynamic batching) answered by the newest image-train model; GET /image/healthz."
                ),
            ),
            Workload(
                name="batch-inference",
                kind="job",
                module="workloads.batch_inference.predict",
                files=(
                    *_PACKAGE_FILES,
                    *_MODEL_FILES,
                    "workloads/batch_inference/__init__.py",
                    "workloads/batch_inference/predict.py",
                ),
                env_defaults=_defaults("BATCH_SIZE", "DATASET", "SEED"),
                pip=_TORCH_PIP,
                needs_storage=True,
                description=(
                    "Ray Data batch inference with the trained model over the held-out set; writes "
                    "parquet predictions to OUTPUT_PATH and prints the accuracy."
                ),
            ),
            Workload(
                name="llm-finetune",
                kind="job",
                module="workloads.llm_finetune.train",
                files=(
                    *_PACKAGE_FILES,
                    *_LLM_MODEL_FILES,
                    "workloads/llm_finetune/data.py",
                    "workloads/train_common.py",
                    "workloads/llm_finetune/train.py",
                ),
                env_defaults=MappingProxyType(
                    {
                        **_defaults(
                            "MODEL_NAME",
                            "SEQ_LEN",
                            "MAX_STEPS_PER_EPOCH",
                            "NUM_WORKERS",
                            "CPUS_PER_WORKER",
                            "USE_GPU",
                            "LEARNING_RATE",
                            "SEED",
                            "MAX_FAILURES",
                            "PAUSE_AFTER_EPOCH",
                            "PAUSE_SECONDS",
                        ),
                        "EPOCHS": "4",
                        "BATCH_SIZE": "8",
                        "RUN_NAME": "llm-finetune",
                    }
                ),
                pip=_LLM_PIP,
                needs_storage=True,
                description=(
                    "Ray Train TorchTrainer + FSDP2 fine-tuning of a Hugging Face causal LM (a tiny Llama "
                    "on standard-library docstrings by default); sharded DCP checkpoints under "
                    "CHECKPOINT_DIR, resumes from the newest one, exports a Hugging Face directory to "
                    "MODEL_PATH (default STORAGE_PATH/models/llm-latest)."
                ),
            ),
            Workload(
                name="llm-serve",
                kind="service",
                module="workloads.llm_serve.app",
                files=(
                    *_PACKAGE_FILES,
                    *_LLM_MODEL_FILES,
                    "workloads/http_limits.py",
                    "workloads/serving.py",
                    "workloads/model_store.py",
                    "workloads/llm_serve/__init__.py",
                    "workloads/llm_serve/app.py",
                ),
                env_defaults=MappingProxyType({}),
                pip=_LLM_PIP,
                needs_storage=True,
                serve_app=ServeApp(
                    app_name="llm",
                    import_path="workloads.llm_serve.app:app",
                    deployment_name="LanguageModel",
                    route_prefix="/llm",
                    examples=(
                        "curl -s {url}/v1/models",
                        "curl -s -X POST {url}/v1/completions -H 'Content-Type: application/json' "
                        """-d '{{"model": "llm-latest", "prompt": "Return the", "max_tokens": 16}}'""",
                    ),
                ),
                description=(
                    "Ray Serve OpenAI-compatible POST /v1/completions and GET /v1/models with the newest "
                    "llm-finetune export from MODEL_PATH, GET /healthz."
                ),
            ),
        )
    }
)


class UnknownWorkloadError(ValueError):
    """Raised for a workload name that is not in :data:`WORKLOADS`."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown workload {name!r}; known workloads: {', '.join(sorted(WORKLOADS))}")


def get_workload(name: str) -> Workload:
    """The catalog entry called ``name``; raises :class:`UnknownWorkloadError` otherwise."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UnknownWorkloadError(name) from None


def workload_env(workload: Workload, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one run: the workload's ``env_defaults`` updated with ``overrides``.

    Raises ``ValueError`` naming any override outside :data:`ENV_CONTRACT`.
    """
    env = dict(workload.env_defaults)
    for name, value in (overrides or {}).items():
        if name not in _CONTRACT_BY_NAME and not workload.open_env:
            valid = ", ".join(var.name for var in ENV_CONTRACT)
            raise ValueError(f"{name!r} is not in the workload env contract; valid names: {valid}")
        env[name] = value
    return env
