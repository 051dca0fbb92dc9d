"""The embedded profile's session key: kept in a file under ``var/``, made on first start.

The key is written to a temporary file and linked into place, so two processes
starting together (web and worker) agree on one key and neither reads a
half-written file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
MIN_SECRET_KEY_LENGTH = 32


class KeyFileTooShort(ValueError):
    """The key file holds fewer than :data:`MIN_SECRET_KEY_LENGTH` characters."""


def read_or_make_key(var_dir: Path) -> str:
    """The key kept under ``var_dir``, generated first when there is none.

    Raises KeyFileTooShort (its message names the file) for a key too short to use.
    """
    path = var_dir / SECRET_KEY_FILE
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        _write_new_key(path)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise KeyFileTooShort(
            f"{path} holds fewer than {MIN_SECRET_KEY_LENGTH} characters;"
            " delete it to generate a new one"
        )
    return key


def _write_new_key(path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        # link() fails if another process won the race; its key is then the key.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
