"""Downloads: which file a download route may serve, and counting downloads.

A repeat download of a file by the same client within 30 seconds counts
once. The route hands a hash of the client (address and user agent, say),
never the address itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.datasets.errors import DatasetFileNotFound, FileGone
from credits.datasets.file_names import file_named, stored_name
from credits.datasets.models import DatasetDownload, DatasetFile, DatasetVersion, VersionState
from credits.datasets.schemas import FileOut
from credits.db import utcnow
from credits.identity.access_datasets import load_version
from credits.identity.actor import Actor

DOWNLOAD_WINDOW = timedelta(seconds=30)


def downloadable_file(
    session: Session, *, version_id: int, name: str, actor: Actor | None
) -> FileOut:
    """The file ``name`` of a version the actor may read, for a download route.

    Raises VersionNotFound, DatasetFileNotFound, and FileGone (410) when the
    version was taken down.
    """
    version = load_version(session, actor, version_id)
    if version.state == VersionState.TAKEN_DOWN.value:
        raise FileGone(
            f"version {version.number} of this dataset was taken down: {version.takedown_reason}"
        )
    file = file_named(version.files, name)
    if file is None:
        raise DatasetFileNotFound(f"this version has no file named {name!r}", name=name)
    return FileOut(
        name=file.name,
        sha256=file.sha256,
        size=file.size,
        media_type=file.media_type,
        download_count=file.download_count,
    )


def record_download(
    session: Session,
    *,
    version_id: int,
    name: str,
    client_key: str,
    now: datetime | None = None,
) -> bool:
    """Counts a download of a file unless the same client's last counted one was
    under 30 seconds ago; returns whether it counted. ``client_key`` is a hash
    the route makes of the client (never the address itself)."""
    at = now or utcnow()
    file = session.scalar(
        select(DatasetFile).where(
            DatasetFile.version_id == version_id, DatasetFile.name == stored_name(name)
        )
    )
    if file is None:
        raise DatasetFileNotFound(f"this version has no file named {name!r}", name=name)
    seen = session.get(DatasetDownload, (file.id, client_key), with_for_update=True)
    if seen is not None and at - seen.counted_at < DOWNLOAD_WINDOW:
        return False
    if seen is None:
        try:
            with session.begin_nested():
                session.add(DatasetDownload(file_id=file.id, client_key=client_key, counted_at=at))
        except IntegrityError:
            return False  # the same client's concurrent request counted it
    else:
        seen.counted_at = at
    session.execute(
        update(DatasetFile)
        .where(DatasetFile.id == file.id)
        .values(download_count=DatasetFile.download_count + 1)
    )
    session.execute(
        update(DatasetVersion)
        .where(DatasetVersion.id == version_id)
        .values(download_count=DatasetVersion.download_count + 1)
    )
    return True
