"""The job submission form: from what was typed to a JobSpec, with errors by field.

The command is one line split like a shell would (``shlex``); environment
variables and labels are ``KEY=VALUE`` lines; the maximum runtime is typed in
minutes; CPU cores, memory and the working directory are optional. A pydantic
ValidationError and a service's CreditsError both come back as errors on the
field they name. :func:`spec_values` goes the other way, so a job's page can
fill the form with its spec ("Copy to new job").
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.errors import CreditsError
from credits.jobs.spec import JobSpec
from credits.pool.errors import NoRateInForce
from credits.pool.schemas import FlavourOut
from credits.pool.service import list_flavours, rate_in_force

FORM_FIELDS = (
    "name",
    "image",
    "command",
    "flavour",
    "gpus",
    "max_runtime_minutes",
    "cpu",
    "memory_gb",
    "working_dir",
    "env",
    "labels",
    "checkpointable",
    "checkpoint_grace_seconds",
)
# Where a JobSpec field's error lands on the form.
SPEC_TO_FORM = {"max_runtime_seconds": "max_runtime_minutes", "args": "command"}
DEFAULTS = {
    "image": "python:3.12",
    "gpus": "1",
    "max_runtime_minutes": "60",
}


@dataclass(frozen=True)
class FlavourChoice:
    flavour: FlavourOut
    micro_per_gpu_hour: int | None  # None: no rate in force, cannot be used now


@dataclass
class JobForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    spec: JobSpec | None = None


def flavour_choices(session: Session, now: datetime) -> list[FlavourChoice]:
    choices = []
    for flavour in list_flavours(session):
        try:
            rate: int | None = rate_in_force(
                session, flavour=flavour.name, at=now
            ).micro_credits_per_gpu_hour
        except NoRateInForce:
            rate = None
        choices.append(FlavourChoice(flavour, rate))
    return choices


def checked_flavour(choices: list[FlavourChoice], chosen: str | None) -> str | None:
    """The flavour the form shows selected, never one that cannot be used now.

    ``chosen`` is None on a fresh form: the first flavour with a rate in force
    (None when none has one). Otherwise it is what the user sent, or what a
    copied job used, and it stays selected while it has a rate; a flavour with
    no rate in force is shown disabled, and a disabled radio is never sent, so
    selecting it would only submit no flavour at all.
    """
    usable = [choice.flavour.name for choice in choices if choice.micro_per_gpu_hour is not None]
    if chosen is None:
        return usable[0] if usable else None
    return chosen if chosen in usable else None


def _pairs(text: str, *, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"line {number}: write each {what} as KEY=VALUE")
        pairs[key.strip()] = value.strip() if what == "label" else value
    return pairs


def _positive_int(text: str, label: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{label} must be a whole number") from None
    if value < 1:
        raise ValueError(f"{label} must be at least 1")
    return value


def parse_job_form(form: Mapping[str, str]) -> JobForm:
    """The typed values, parsed into a JobSpec when they make one."""
    values = {name: str(form.get(name, "")) for name in FORM_FIELDS}
    parsed = JobForm(values=values)
    errors = parsed.errors
    document: dict[str, Any] = {
        "name": values["name"].strip(),
        "image": values["image"].strip(),
        "flavour": values["flavour"].strip(),
    }
    try:
        document["command"] = shlex.split(values["command"])
    except ValueError as error:
        errors["command"] = f"cannot split the command: {error}"
    _read_numbers(values, document, errors)
    if values["working_dir"].strip():
        document["working_dir"] = values["working_dir"].strip()
    document["checkpointable"] = values["checkpointable"] == "on"
    for name, what in (("env", "variable"), ("labels", "label")):
        try:
            document[name] = _pairs(values[name], what=what)
        except ValueError as error:
            errors[name] = str(error)
    if not document["flavour"]:
        errors["flavour"] = "choose a GPU flavour"
    if errors:
        return parsed
    try:
        parsed.spec = JobSpec.model_validate(document)
    except ValidationError as invalid:
        errors.update(validation_errors(invalid))
    return parsed


def _read_numbers(values: dict[str, str], document: dict[str, Any], errors: dict[str, str]) -> None:
    """The numeric fields into the document; an empty optional one is left out."""
    for name, label in (("gpus", "GPUs"), ("max_runtime_minutes", "Max runtime")):
        try:
            number = _positive_int(values[name], label)
        except ValueError as error:
            errors[name] = str(error)
            continue
        if name == "gpus":
            document["gpus"] = number
        else:
            document["max_runtime_seconds"] = number * 60
    for name, label in (("cpu", "CPU cores"), ("memory_gb", "Memory")):
        if values[name].strip():
            try:
                document[name] = float(values[name].strip())
            except ValueError:
                errors[name] = f"{label} must be a number, e.g. 8 or 0.5"
    grace = values["checkpoint_grace_seconds"].strip()
    if grace:
        try:
            document["checkpoint_grace_seconds"] = int(grace)
        except ValueError:
            errors["checkpoint_grace_seconds"] = "Checkpoint grace must be a whole number"


def validation_errors(invalid: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in invalid.errors():
        location = problem.get("loc") or ("form",)
        name = str(location[0])
        name = SPEC_TO_FORM.get(name, name)
        if name not in FORM_FIELDS:
            name = "form"
        message = fmt.validation_message(problem)
        if name == "name" and problem.get("type") == "string_pattern_mismatch":
            message = "use lower-case letters, digits and dashes (e.g. train-resnet)"
        errors.setdefault(name, message)
    return errors


def refusal_errors(error: CreditsError) -> tuple[dict[str, str], str]:
    """A service's refusal as (field errors, form error)."""
    name = error.extra.get("field")
    if isinstance(name, str):
        name = SPEC_TO_FORM.get(name, name)
        if name in FORM_FIELDS:
            return {name: str(error)}, "Nothing was submitted: correct the marked field."
    return {}, f"{fmt.sentence(str(error))} Nothing was submitted."


def spec_values(spec: JobSpec) -> dict[str, str]:
    """The form's fields filled from a spec: what parse_job_form reads back as the same
    job (its arguments join the command; a runtime in seconds rounds up to a minute)."""
    return {
        "name": spec.name,
        "image": spec.image,
        "command": shlex.join([*spec.command, *spec.args]),
        "flavour": spec.flavour,
        "gpus": str(spec.gpus),
        "max_runtime_minutes": str(-(-spec.max_runtime_seconds // 60)),
        "cpu": _number(spec.cpu),
        "memory_gb": _number(spec.memory_gb),
        "working_dir": spec.working_dir or "",
        "env": "".join(f"{key}={value}\n" for key, value in spec.env.items()),
        "labels": "".join(f"{key}={value}\n" for key, value in spec.labels.items()),
        "checkpointable": "on" if spec.checkpointable else "",
        "checkpoint_grace_seconds": _number(spec.checkpoint_grace_seconds),
    }


def _number(value: float | None) -> str:
    if value is None:
        return ""
    # 8.0 reads "8"; any other float keeps every digit it has (repr round-trips).
    return str(int(value)) if float(value).is_integer() else repr(value)
