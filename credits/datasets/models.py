"""Dataset tables: datasets, their versions, each version's files, keywords and provenance.

A dataset belongs to a project and has a ``concept_id`` that never changes
and resolves to its newest published version. A version moves::

    draft ──publish──▶ published ──deprecate──▶ deprecated
                          │                        │
                          └──────take down─────────┴──▶ taken_down (tombstone)

Only a draft's metadata, datasheet, files and provenance change; the service
refuses every edit of any other state. A file row names a blob by sha256 in
content-addressed storage; a new version copies the rows, never the bytes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow

FILE_NAME_MAX_LENGTH = 1024  # credits.storage.names.MAX_NAME_BYTES
TITLE_MAX_LENGTH = 300
KEYWORD_MAX_LENGTH = 100


class VersionState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    DEPRECATED = "deprecated"
    TAKEN_DOWN = "taken_down"

    @property
    def is_public(self) -> bool:
        """Shown to anyone: published and deprecated versions, and tombstones."""
        return self is not VersionState.DRAFT


class ProvenanceKind(StrEnum):
    JOB = "job"
    ALLOCATION = "allocation"
    LABELLING_ORDER = "labelling_order"


class Dataset(Base):
    """A dataset of a project; ``concept_id`` is its public, permanent name."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    concept_id: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        order_by="DatasetVersion.number",
        foreign_keys="DatasetVersion.dataset_id",
    )


class DatasetVersion(Base):
    """One version: its metadata, datasheet and state; published versions never change."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number"),
        CheckConstraint(in_values("state", VersionState), name="state"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint(
            "state = 'draft' OR (published_at IS NOT NULL AND manifest_sha256 IS NOT NULL)",
            name="public_has_manifest",
        ),
        CheckConstraint(
            "state <> 'deprecated' OR deprecated_at IS NOT NULL", name="deprecated_has_time"
        ),
        CheckConstraint(
            "state <> 'taken_down' OR (taken_down_at IS NOT NULL AND takedown_reason IS NOT NULL)",
            name="taken_down_has_reason",
        ),
        CheckConstraint("successor_id IS NULL OR successor_id <> id", name="successor_not_self"),
        CheckConstraint("download_count >= 0", name="download_count_not_negative"),
        # At most one draft per dataset, whatever the code does.
        Index(
            "uq_dataset_versions_one_draft",
            "dataset_id",
            unique=True,
            sqlite_where=text("state = 'draft'"),
            postgresql_where=text("state = 'draft'"),
        ),
        Index("ix_dataset_versions_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=VersionState.DRAFT.value)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # [{"name", "name_type", "orcid", "affiliation", "ror"}], validated by schemas.Creator.
    creators: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # An SPDX licence identifier in its canonical spelling, e.g. "CC-BY-4.0".
    license: Mapped[str | None] = mapped_column(String(100), index=True)
    # [{"identifier", "identifier_type", "relation_type"}], DataCite's vocabulary.
    related_identifiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # How the creators ask to be cited, when they want more than the generated citation.
    citation: Mapped[str] = mapped_column(Text, default="")
    # {section: text} for the sections of schemas.DATASHEET_SECTIONS.
    datasheet: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Lowercased title, description, keywords and creator names: what search reads.
    search_text: Mapped[str] = mapped_column(Text, default="")
    # SHA-256 of the canonical file manifest, set when published (manifest.py).
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    download_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    published_by: Mapped[str | None] = mapped_column(String(200))
    deprecated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    deprecated_by: Mapped[str | None] = mapped_column(String(200))
    deprecation_note: Mapped[str | None] = mapped_column(Text)
    successor_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    taken_down_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    taken_down_by: Mapped[str | None] = mapped_column(String(200))
    takedown_reason: Mapped[str | None] = mapped_column(Text)

    dataset: Mapped[Dataset] = relationship(
        back_populates="versions", foreign_keys=[dataset_id], lazy="joined"
    )
    files: Mapped[list[DatasetFile]] = relationship(
        back_populates="version",
        cascade="all, delete-orphan",
        order_by="DatasetFile.name",
    )
    keywords: Mapped[list[DatasetKeyword]] = relationship(
        cascade="all, delete-orphan", order_by="DatasetKeyword.position"
    )
    provenance: Mapped[list[DatasetProvenance]] = relationship(
        cascade="all, delete-orphan", order_by="DatasetProvenance.id"
    )


class DatasetFile(Base):
    """A named file of a version: a pointer to a blob by its sha256 and size."""

    __tablename__ = "dataset_files"
    __table_args__ = (
        UniqueConstraint("version_id", "name"),
        CheckConstraint("size >= 0", name="size_not_negative"),
        CheckConstraint("length(sha256) = 64", name="sha256_is_hex"),
        CheckConstraint("download_count >= 0", name="download_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(FILE_NAME_MAX_LENGTH))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(127))
    download_count: Mapped[int] = mapped_column(BigInteger, default=0)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    version: Mapped[DatasetVersion] = relationship(back_populates="files")


class DatasetKeyword(Base):
    """One keyword of a version, lowercased for filtering; ``position`` keeps their order."""

    __tablename__ = "dataset_keywords"
    __table_args__ = (UniqueConstraint("version_id", "position"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    keyword: Mapped[str] = mapped_column(String(KEYWORD_MAX_LENGTH), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


class DatasetProvenance(Base):
    """What produced a version: a GPU job or an allocation, with what it cost.

    The figures are a snapshot taken when the row is recorded and again when
    the version is published; after that they are the version's record. An
    allocation row is ``explicit`` when someone recorded it, else it is there
    because a recorded job was charged to it. All figures are integers times
    1,000,000: micro-credits, micro-GPU-seconds, micro-kWh, micro-kg CO2e.
    """

    __tablename__ = "dataset_provenance"
    __table_args__ = (
        UniqueConstraint("version_id", "job_id"),
        UniqueConstraint("version_id", "allocation_id"),
        UniqueConstraint("version_id", "labelling_order_id"),
        CheckConstraint(in_values("kind", ProvenanceKind), name="kind"),
        CheckConstraint(
            "(kind = 'job' AND job_id IS NOT NULL AND allocation_id IS NULL"
            " AND labelling_order_id IS NULL)"
            " OR (kind = 'allocation' AND allocation_id IS NOT NULL AND job_id IS NULL"
            " AND labelling_order_id IS NULL)"
            " OR (kind = 'labelling_order' AND labelling_order_id IS NOT NULL"
            " AND job_id IS NULL AND allocation_id IS NULL)",
            name="one_subject",
        ),
        CheckConstraint(
            "charged_micro >= 0 AND gpu_seconds_micro >= 0 AND kwh_micro >= 0"
            " AND kg_co2e_micro >= 0",
            name="figures_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"), index=True)
    labelling_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("labelling_orders.id"), index=True
    )
    # The allocation's program, kept for funding references and the catalogue's filter.
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), index=True)
    explicit: Mapped[bool] = mapped_column(Boolean, default=True)
    charged_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    gpu_seconds_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    kwh_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    kg_co2e_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DatasetDownload(Base):
    """When a client last had a download of a file counted: a repeat within the
    window counts once (keyed by a hash the download route makes of the client)."""

    __tablename__ = "dataset_downloads"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_files.id", ondelete="CASCADE"), primary_key=True
    )
    client_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class DoiState(StrEnum):
    """A DOI's state at DataCite: a draft resolves nowhere; a findable DOI resolves
    and is indexed; a registered one resolves and is not indexed. Findable and
    registered DOIs can never be deleted or return to draft."""

    DRAFT = "draft"
    FINDABLE = "findable"
    REGISTERED = "registered"


class DatasetDoi(Base):
    """A version's DOI and what DataCite still has to be told (credits/datasets/doi.py).

    The row is written with the version's first save; ``pending`` is set
    whenever DataCite's copy falls behind (reservation, publication,
    deprecation, take-down) and cleared when DataCite confirms. The sweep
    finishes pending rows, backing off after failures through ``next_attempt_at``.
    """

    __tablename__ = "dataset_dois"
    __table_args__ = (
        CheckConstraint(
            "datacite_state IS NULL OR " + in_values("datacite_state", DoiState),
            name="datacite_state",
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_dataset_dois_pending", "pending", "next_attempt_at"),
    )

    version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    doi: Mapped[str] = mapped_column(String(255), unique=True)
    # What DataCite last confirmed; None until the draft is reserved there.
    datacite_state: Mapped[str | None] = mapped_column(String(16))
    pending: Mapped[bool] = mapped_column(Boolean, default=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # Loaded on access: the row is read FOR UPDATE, which PostgreSQL refuses on a join.
    version: Mapped[DatasetVersion] = relationship()
