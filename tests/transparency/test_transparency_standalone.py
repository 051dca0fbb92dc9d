"""The modules the standalone verifier imports pull in nothing of the platform."""

from __future__ import annotations

import subprocess
import sys

STANDALONE = [
    "merkle",
    "tiles",
    "stores",
    "note",
    "checkpoint",
    "replay",
    "sources",
    "verifier",
    "verify_cli",
    "witness",
]
FORBIDDEN = [
    "sqlalchemy",
    "flask",
    "pydantic",
    "fsspec",
    "celery",
    "credits.db",
    "credits.storage",
    "credits.settings",
]


def test_the_verifier_modules_import_only_the_standard_library_cryptography_and_requests() -> None:
    imports = "; ".join(f"import credits.transparency.{name}" for name in STANDALONE)
    probe = f"import sys; {imports}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in loaded if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN] == []
