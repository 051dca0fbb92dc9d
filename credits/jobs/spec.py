"""What a researcher asks for when submitting a GPU job.

Checks that need the database or the pool (does the flavour exist, can any
node ever hold this many GPUs, is the runtime under the platform's cap) live
in the submission service; everything that can be said about the document on
its own is said here, field by field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from credits.pool.models import FLAVOUR_NAME_PATTERN

# A DNS-1123 label, so the name can be part of a Kubernetes object name.
JOB_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A label key as the API server checks it (apimachinery's IsQualifiedName): a name of
# at most 63 characters, after an optional prefix and '/'; the prefix is a DNS-1123
# subdomain, dot-separated DNS-1123 labels, at most 253 characters. Matched whole
# (fullmatch: '$' would let a trailing newline through).
_DNS1123_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
LABEL_PREFIX_PATTERN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
LABEL_PREFIX_MAX = 253
LABEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
LABEL_VALUE_PATTERN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
# What earlier versions accepted (with .match: '$' let a trailing newline through, and
# a prefix could hold any run of dots and dashes): a spec stored then still loads, and
# the manifests leave such labels off the objects.
_EARLIER_LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
_EARLIER_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_ENV_TOTAL_BYTES = 256 * 1024
MAX_ENV_ENTRIES = 128
MAX_LABELS = 32
MAX_GPUS = 1024
# Set by the platform for every job; a spec may not override them.
RESERVED_ENV_NAMES = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})
RESERVED_ENV_PREFIX = "CREDITS_"
# Label key prefixes (the part before '/') that Kubernetes, its ecosystem and the
# platform give meaning to: a domain named here, or any of its subdomains.
RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "x-k8s.io", "istio.io", "credits.dev")
# Read by the simulated executor only (tests, demos); harmless elsewhere.
SIMULATION_LABELS = frozenset(
    {"credits.dev/simulated-duration-s", "credits.dev/simulated-exit-code"}
)
# Validation context of a spec read back from the database (see stored_spec).
_STORED = "stored"
DEFAULT_CPU_PER_GPU = 4.0
DEFAULT_MEMORY_GB_PER_GPU = 32.0
# A checkpointable job's grace when its spec names none (lowered to its flavour's cap).
DEFAULT_CHECKPOINT_GRACE_S = 60
MAX_CHECKPOINT_GRACE_S = 86400

Argument = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]


class JobSpec(BaseModel):
    """A GPU job: what to run, on how many GPUs of which flavour, for how long at most."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str = Field(pattern=JOB_NAME_PATTERN, examples=["train-resnet"])
    image: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$",
        description="container image; the local executor runs the command on the host instead",
        examples=["nvcr.io/nvidia/pytorch:24.10-py3"],
    )
    command: list[Argument] = Field(min_length=1, max_length=64, examples=[["python", "train.py"]])
    args: list[Argument] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = Field(
        default=None, max_length=1024, pattern=r"^/[^\x00]*$", description="an absolute path"
    )
    flavour: str = Field(pattern=FLAVOUR_NAME_PATTERN, examples=["a100-80gb"])
    gpus: int = Field(strict=True, ge=1, le=MAX_GPUS)
    # strict: "1" and true are not numbers, as the schema says.
    cpu: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=4096,
        description=f"cores; default {DEFAULT_CPU_PER_GPU:g} per GPU",
    )
    memory_gb: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=65536,
        description=f"GiB; default {DEFAULT_MEMORY_GB_PER_GPU:g} per GPU",
    )
    max_runtime_seconds: int = Field(
        strict=True, ge=1, description="the job is stopped after this; credits are held for it"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    checkpointable: bool = Field(
        default=False,
        strict=True,
        description="the platform may stop the job (SIGTERM, the grace, then SIGKILL) and"
        " restart it on other nodes, keeping its hold; it saves to and resumes from"
        " $CREDITS_CHECKPOINT_DIR, and $CREDITS_RESTART_COUNT says how often it restarted",
    )
    checkpoint_grace_seconds: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_CHECKPOINT_GRACE_S,
        description=f"seconds between SIGTERM and SIGKILL when the platform stops a"
        f" checkpointable job; default {DEFAULT_CHECKPOINT_GRACE_S} (or the flavour's cap"
        f" if lower), at most the flavour's max_checkpoint_grace_seconds",
    )

    @model_validator(mode="after")
    def _grace_only_when_checkpointable(self) -> JobSpec:
        if self.checkpoint_grace_seconds is not None and not self.checkpointable:
            # Located on the field, so the API, the CLI and the form name it.
            raise ValidationError.from_exception_data(
                "JobSpec",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "grace_without_checkpointable",
                            "checkpoint_grace_seconds applies only to a job with"
                            " checkpointable: true",
                        ),
                        loc=("checkpoint_grace_seconds",),
                        input=self.checkpoint_grace_seconds,
                    )
                ],
            )
        return self

    @field_validator("env")
    @classmethod
    def _env_is_safe(cls, env: dict[str, str]) -> dict[str, str]:
        if len(env) > MAX_ENV_ENTRIES:
            raise ValueError(f"at most {MAX_ENV_ENTRIES} environment variables")
        total = 0
        for name, value in env.items():
            if not ENV_NAME_PATTERN.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"{name!r} is set by the platform and cannot be overridden")
            if "\x00" in value:
                raise ValueError(f"the value of {name!r} contains a NUL character")
            size = len(value.encode())
            if size > MAX_ENV_VALUE_BYTES:
                raise ValueError(f"the value of {name!r} is over {MAX_ENV_VALUE_BYTES} bytes")
            total += size
        if total > MAX_ENV_TOTAL_BYTES:
            raise ValueError(f"environment values total over {MAX_ENV_TOTAL_BYTES} bytes")
        return env

    @field_validator("labels")
    @classmethod
    def _labels_are_kubernetes_labels(
        cls, labels: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        if len(labels) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        stored = bool(info.context and info.context.get(_STORED))
        errors = [
            InitErrorDetails(type=problem, loc=(key,), input=key)
            for key, value in labels.items()
            if (problem := _label_problem(key, value, stored=stored)) is not None
        ]
        if errors:
            # Each error names its label: loc ("labels", key).
            raise ValidationError.from_exception_data("labels", errors)
        return labels

    @property
    def cpu_millicores(self) -> int:
        cores = self.cpu if self.cpu is not None else DEFAULT_CPU_PER_GPU * self.gpus
        return max(1, round(cores * 1000))

    @property
    def memory_mb(self) -> int:
        gib = (
            self.memory_gb if self.memory_gb is not None else DEFAULT_MEMORY_GB_PER_GPU * self.gpus
        )
        return max(1, round(gib * 1024))

    def grace_under(self, cap: int) -> int:
        """The checkpoint grace this job gets on a flavour capped at ``cap`` seconds:
        the one it asked for, else the default lowered to the cap (0: not checkpointable)."""
        if not self.checkpointable:
            return 0
        if self.checkpoint_grace_seconds is not None:
            return self.checkpoint_grace_seconds
        return min(DEFAULT_CHECKPOINT_GRACE_S, cap)


def reserved_label_domain(key: str) -> str | None:
    """The reserved domain a label key's prefix is or is under, else None."""
    prefix, slash, _ = key.rpartition("/")
    if not slash:
        return None
    prefix = prefix.lower()
    for domain in RESERVED_LABEL_DOMAINS:
        if prefix == domain or prefix.endswith(f".{domain}"):
            return domain
    return None


def is_label_key(key: str) -> bool:
    """Whether Kubernetes takes ``key`` as a label key (see LABEL_PREFIX_PATTERN)."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= LABEL_PREFIX_MAX and LABEL_PREFIX_PATTERN.fullmatch(prefix)):
        return False
    return LABEL_NAME_PATTERN.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return LABEL_VALUE_PATTERN.fullmatch(value) is not None


def stored_spec(text: str) -> JobSpec:
    """A spec as the database keeps it. One accepted before a label domain was
    reserved, or before label keys and values were checked as Kubernetes checks them,
    still loads; the Kubernetes manifests leave such labels out."""
    return JobSpec.model_validate_json(text, context={_STORED: True})


def _label_problem(key: str, value: str, *, stored: bool) -> PydanticCustomError | None:
    if not is_label_key(key) and not (stored and _EARLIER_LABEL_KEY.match(key)):
        return PydanticCustomError("label_key", "not a valid label key")
    domain = reserved_label_domain(key)
    if domain is not None and key not in SIMULATION_LABELS and not stored:
        return PydanticCustomError(
            "reserved_label",
            "label keys under {domain} are reserved for Kubernetes and the platform",
            {"domain": domain},
        )
    if not is_label_value(value) and not (stored and _EARLIER_LABEL_VALUE.match(value)):
        return PydanticCustomError("label_value", "not a valid label value")
    return None
