"""Re-hashing stored files against the manifests: which are missing, which corrupt.

Each distinct blob is read once, however many versions name it. A blob is
``missing`` when the store does not have it, ``corrupt`` when its size or its
SHA-256 no longer match the address; every file row naming it is reported by
its version and name. Taken-down versions are left out: their files may have
been removed from storage on purpose.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets.blobs import BlobReader
from credits.datasets.models import DatasetFile, DatasetVersion, VersionState
from credits.datasets.schemas import VerifyProblem, VerifyReport
from credits.storage.errors import BlobNotFound

Problem = Literal["missing", "corrupt"]


def check_blob(store: BlobReader, sha256: str, size: int) -> Problem | None:
    """What is wrong with one stored blob, or None."""
    try:
        if not store.exists(sha256):
            return "missing"
        if store.size(sha256) != size:
            return "corrupt"
        return None if store.verify(sha256) else "corrupt"
    except BlobNotFound:
        return "missing"


def verify_files(
    session: Session, *, store: BlobReader, version_id: int | None = None
) -> VerifyReport:
    """Checks the files of one version, or of every version that is not taken down."""
    query = (
        select(DatasetFile, DatasetVersion.public_id)
        .join(DatasetVersion, DatasetVersion.id == DatasetFile.version_id)
        .order_by(DatasetVersion.id, DatasetFile.name)
    )
    if version_id is None:
        query = query.where(DatasetVersion.state != VersionState.TAKEN_DOWN.value)
    else:
        query = query.where(DatasetVersion.id == version_id)
    rows = session.execute(query).all()
    found: dict[tuple[str, int], Problem | None] = {}
    problems = []
    for file, public_id in rows:
        key = (file.sha256, file.size)
        if key not in found:
            found[key] = check_blob(store, file.sha256, file.size)
        problem = found[key]
        if problem is not None:
            problems.append(
                VerifyProblem(
                    version_public_id=public_id, name=file.name, sha256=file.sha256, problem=problem
                )
            )
    return VerifyReport(files_checked=len(rows), blobs_checked=len(found), problems=problems)
