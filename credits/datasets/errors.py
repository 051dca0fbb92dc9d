"""What the datasets domain refuses, each with the HTTP status the API answers with."""

from __future__ import annotations

from typing import ClassVar

from credits.errors import Conflict, CreditsError, Forbidden, InvalidInput, NotFound


class DatasetNotFound(NotFound):
    slug = "dataset-not-found"
    title = "Dataset not found"


class VersionNotFound(NotFound):
    slug = "dataset-version-not-found"
    title = "Dataset version not found"


class DatasetFileNotFound(NotFound):
    slug = "dataset-file-not-found"
    title = "File not found in this dataset version"


class DatasetForbidden(Forbidden):
    slug = "dataset-forbidden"
    title = "Only the project's members or ops may do this"


class VersionImmutable(Conflict):
    """Only a draft changes; ``extra["current_state"]`` is the version's state."""

    slug = "dataset-version-immutable"
    title = "A published dataset version cannot be changed"


class VersionStateConflict(Conflict):
    """The version is not in a state that allows this; ``extra["current_state"]`` says which."""

    slug = "dataset-version-state-conflict"
    title = "Dataset version is not in a state that allows this"


class DraftExists(Conflict):
    slug = "dataset-draft-exists"
    title = "This dataset already has a draft version"


class DuplicateFileName(Conflict):
    slug = "dataset-duplicate-file-name"
    title = "A file of that name is already in this version"


class InvalidMetadata(InvalidInput):
    slug = "invalid-dataset-metadata"
    title = "Invalid dataset metadata"


class IncompleteMetadata(InvalidInput):
    """Publishing needs more; ``extra["missing"]`` lists every field or section lacking."""

    slug = "dataset-metadata-incomplete"
    title = "Dataset metadata is incomplete"


class InvalidProvenance(InvalidInput):
    slug = "invalid-dataset-provenance"
    title = "Invalid dataset provenance"


class VersionTooLarge(CreditsError):
    status: ClassVar[int] = 413
    slug: ClassVar[str] = "dataset-version-too-large"
    title: ClassVar[str] = "Dataset version would exceed its size limit"


class FileGone(CreditsError):
    """The version was taken down: its tombstone stays, its files are not served."""

    status: ClassVar[int] = 410
    slug: ClassVar[str] = "dataset-file-gone"
    title: ClassVar[str] = "This dataset version was taken down"
