"""The transparency log as the platform runs it: keys, the tile store, checkpoints.

The integrator (integrator.py) writes; the public endpoints, the witness and the
ops CLI read through the functions here. Entries are audit rows'
``canonical_json`` (UTF-8, less idempotency keys: entries.py) in ``log_index``
order; tiles and entry bundles lie under ``transparency/`` in the storage root;
each signed checkpoint is a row of ``transparency_checkpoints`` and the latest
is also the file ``transparency/checkpoint``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.errors import Conflict, CreditsError
from credits.settings import Profile, Settings
from credits.storage.factory import blob_store_from_settings
from credits.storage.fs_store import FsspecBlobStore
from credits.transparency.checkpoint import Checkpoint, parse_checkpoint_text
from credits.transparency.models import TransparencyCheckpoint
from credits.transparency.note import (
    NoteError,
    Signer,
    generate_signer,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
)
from credits.transparency.stores import TILES_PREFIX, FolderTileStore, FsspecTileStore
from credits.transparency.tiles import TileStore

logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint"


class KeyMissing(CreditsError):
    status = 503
    slug = "transparency-key-missing"
    title = "No signing key"


class KeyInvalid(CreditsError):
    status = 503
    slug = "transparency-key-invalid"
    title = "Bad signing key"


class KeyExists(Conflict):
    slug = "transparency-key-exists"
    title = "A signing key exists"


# Keys.


def load_signer(settings: Settings) -> Signer:
    """The current signing key: the setting, else the key file.

    Raises KeyMissing when neither is there and KeyInvalid for a file that does
    not hold a private key string (never quoting it: it is a secret).
    """
    configured = settings.transparency_signer_key.get_secret_value()
    if configured:
        return parse_signer_key(configured)  # checked when the settings loaded
    path = settings.transparency_key_path
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyMissing(
            f"no transparency signing key at {path}: run `credits transparency init-key`"
            " or set CREDITS_TRANSPARENCY_SIGNER_KEY"
        ) from None
    try:
        return parse_signer_key(text)
    except NoteError:
        raise KeyInvalid(f"{path} does not hold a private key string (PRIVATE+KEY+...)") from None


def init_key(settings: Settings) -> Signer:
    """Writes a new signing key named after the log's origin to the key file, mode
    0600; raises KeyExists rather than replace a key (checkpoints it signed would
    stop verifying for anyone not told the old public key)."""
    path = settings.transparency_key_path
    signer = generate_signer(settings.log_origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: refused if the file exists, also when two processes race.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(
            f"{path} exists; to rotate, move it away and list its public key in "
            "CREDITS_TRANSPARENCY_OLD_VERIFIER_KEYS"
        ) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(signer.key_string() + "\n")
    return signer


def ensure_embedded_key(settings: Settings) -> None:
    """The embedded profile makes its key on first use, as it does its secret key:
    ``./scripts/up`` needs no setup. Production keys are made by an operator."""
    if settings.profile is not Profile.EMBEDDED:
        return
    if settings.transparency_signer_key.get_secret_value():
        return
    if settings.transparency_key_path.exists():
        return
    with contextlib.suppress(KeyExists):  # another process made it first
        signer = init_key(settings)
        logger.info(
            "transparency: made %s, verifier key %s",
            settings.transparency_key_path,
            signer.verifier.key_string(),
        )


def verifier_keys(settings: Settings) -> list[str]:
    """The verifier key strings readers should accept: the current key's (when one
    is configured) first, then every old key's."""
    keys = []
    with contextlib.suppress(KeyMissing, KeyInvalid):
        keys.append(load_signer(settings).verifier.key_string())
    for old in settings.old_verifier_keys:
        key = parse_verifier_key(old).key_string()
        if key not in keys:
            keys.append(key)
    return keys


# Storage.


def tile_store(settings: Settings) -> TileStore:
    """Tiles beside the platform's blobs, under ``transparency/``: a folder (written
    by rename, so a file server never serves half a tile) for file:// storage, the
    same fsspec file system otherwise."""
    blobs = blob_store_from_settings(settings)
    if not isinstance(blobs, FsspecBlobStore):
        raise TypeError(f"tiles need an fsspec blob store, not {type(blobs).__name__}")
    if settings.storage_url.startswith("file://"):
        return FolderTileStore(Path(blobs.root) / TILES_PREFIX)
    return FsspecTileStore.beside(blobs)


def write_checkpoint_file(settings: Settings, note: bytes) -> None:
    """Stores the signed note as ``transparency/checkpoint`` in the storage root."""
    fs, path = _checkpoint_location(settings)
    if settings.storage_url.startswith("file://"):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{CHECKPOINT_FILE}.{os.getpid()}")
        temporary.write_bytes(note)
        temporary.replace(target)
        return
    fs.makedirs(fs._parent(path), exist_ok=True)
    fs.pipe_file(path, note)


def read_checkpoint_file(settings: Settings) -> bytes | None:
    fs, path = _checkpoint_location(settings)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _checkpoint_location(settings: Settings) -> tuple[Any, str]:
    blobs = blob_store_from_settings(settings)
    if not isinstance(blobs, FsspecBlobStore):
        raise TypeError(f"the log needs an fsspec blob store, not {type(blobs).__name__}")
    return blobs.fs, f"{blobs.root}/{TILES_PREFIX}/{CHECKPOINT_FILE}"


# Checkpoints.


def latest_checkpoint_row(session: Session) -> TransparencyCheckpoint | None:
    """The newest checkpoint of the largest tree (a rotation re-signs a size)."""
    return session.scalars(
        select(TransparencyCheckpoint)
        .order_by(TransparencyCheckpoint.size.desc(), TransparencyCheckpoint.id.desc())
        .limit(1)
    ).first()


def latest_checkpoint(session: Session) -> bytes | None:
    """The latest signed checkpoint note, or None before the first integration."""
    row = latest_checkpoint_row(session)
    return None if row is None else row.note.encode()


def checkpoint_body(note: bytes) -> Checkpoint:
    """The checkpoint inside a stored note, unverified (the platform wrote it)."""
    return parse_checkpoint_text(parse_note(note).text)


def store_checkpoint(
    session: Session, note: bytes, *, now: datetime | None = None
) -> TransparencyCheckpoint:
    """Adds the signed checkpoint to the table (the caller commits, then writes the
    checkpoint file with write_checkpoint_file)."""
    checkpoint = checkpoint_body(note)
    row = TransparencyCheckpoint(
        size=checkpoint.size,
        root_hash=checkpoint.root_hash.hex(),
        note=note.decode(),
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    return row


# Status.


class LogStatus(BaseModel):
    """Where the log stands, for ops and the transparency page."""

    origin: str
    size: int
    root_hash: str | None
    checkpoint_at: datetime | None
    integrated: int
    unintegrated: int
    newest_integrated_at: datetime | None
    oldest_unintegrated_at: datetime | None
    # now - occurred_at of the newest integrated row, and the age of the oldest
    # row still waiting: how far the public log trails the database.
    integration_delay_s: float | None
    oldest_unintegrated_age_s: float | None
    verifier_keys: list[str]


def log_status(session: Session, settings: Settings, *, now: datetime | None = None) -> LogStatus:
    now = now or utcnow()
    row = latest_checkpoint_row(session)
    integrated, newest = session.execute(
        select(func.count(), func.max(AuditEvent.occurred_at)).where(
            AuditEvent.log_index.is_not(None)
        )
    ).one()
    waiting, oldest = session.execute(
        select(func.count(), func.min(AuditEvent.occurred_at)).where(AuditEvent.log_index.is_(None))
    ).one()
    newest_at: datetime | None = newest
    oldest_at: datetime | None = oldest
    return LogStatus(
        origin=settings.log_origin,
        size=0 if row is None else row.size,
        root_hash=None if row is None else row.root_hash,
        checkpoint_at=None if row is None else row.created_at,
        integrated=integrated,
        unintegrated=waiting,
        newest_integrated_at=newest_at,
        oldest_unintegrated_at=oldest_at,
        integration_delay_s=None if newest_at is None else (now - newest_at).total_seconds(),
        oldest_unintegrated_age_s=None if oldest_at is None else (now - oldest_at).total_seconds(),
        verifier_keys=verifier_keys(settings),
    )
