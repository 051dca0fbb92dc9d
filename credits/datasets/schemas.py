"""Shapes the datasets domain takes and returns.

The input shapes check what a field alone can tell (an ORCID checksum, a ROR
id, an SPDX licence, DataCite's vocabularies); what a version needs before it
may be published is :func:`credits.datasets.service.missing_for_publication`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from credits.datasets.identifiers import clean_license, clean_orcid, clean_ror
from credits.datasets.models import KEYWORD_MAX_LENGTH, TITLE_MAX_LENGTH, VersionState

# The sections of Datasheets for Datasets (Gebru et al.), then what a reader must
# know before reuse. Keys as stored; titles as shown.
DATASHEET_SECTIONS: dict[str, str] = {
    "motivation": "Motivation",
    "composition": "Composition",
    "collection": "Collection process",
    "preprocessing": "Preprocessing, cleaning and labelling",
    "uses": "Uses",
    "distribution": "Distribution",
    "maintenance": "Maintenance",
    "biases": "Known biases",
    "limitations": "Limitations",
    "sensitive_information": "Personal or sensitive information",
}
SECTION_MAX_LENGTH = 20_000
MAX_CREATORS = 200
MAX_KEYWORDS = 50
MAX_RELATED = 100

Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Orcid = Annotated[str, AfterValidator(clean_orcid)]
Ror = Annotated[str, AfterValidator(clean_ror)]
License = Annotated[str, AfterValidator(clean_license)]
Keyword = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=KEYWORD_MAX_LENGTH),
]


class NameType(StrEnum):
    PERSONAL = "personal"
    ORGANIZATIONAL = "organizational"


class Creator(BaseModel):
    """A person or organisation who made the data; people are named "Family, Given"."""

    model_config = ConfigDict(extra="forbid")

    name: Text200
    name_type: NameType = NameType.PERSONAL
    orcid: Orcid | None = None
    affiliation: Text200 | None = None
    ror: Ror | None = Field(default=None, description="the affiliation's ROR id")


RelationType = Literal[
    "IsCitedBy",
    "Cites",
    "IsSupplementTo",
    "IsSupplementedBy",
    "IsContinuedBy",
    "Continues",
    "IsDescribedBy",
    "Describes",
    "HasMetadata",
    "IsMetadataFor",
    "HasVersion",
    "IsVersionOf",
    "IsNewVersionOf",
    "IsPreviousVersionOf",
    "IsPartOf",
    "HasPart",
    "IsPublishedIn",
    "IsReferencedBy",
    "References",
    "IsDocumentedBy",
    "Documents",
    "IsCompiledBy",
    "Compiles",
    "IsVariantFormOf",
    "IsOriginalFormOf",
    "IsIdenticalTo",
    "IsReviewedBy",
    "Reviews",
    "IsDerivedFrom",
    "IsSourceOf",
    "IsRequiredBy",
    "Requires",
    "IsObsoletedBy",
    "Obsoletes",
    "IsCollectedBy",
    "Collects",
]
IdentifierType = Literal[
    "ARK",
    "arXiv",
    "bibcode",
    "DOI",
    "EAN13",
    "EISSN",
    "Handle",
    "IGSN",
    "ISBN",
    "ISSN",
    "ISTC",
    "LISSN",
    "LSID",
    "PMID",
    "PURL",
    "UPC",
    "URL",
    "URN",
    "w3id",
]


class RelatedIdentifier(BaseModel):
    """A paper, code or dataset this one relates to, in DataCite's vocabulary."""

    model_config = ConfigDict(extra="forbid")

    identifier: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ]
    identifier_type: IdentifierType
    relation_type: RelationType


class MetadataPatch(BaseModel):
    """Changes to a draft's metadata: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=TITLE_MAX_LENGTH)] = (
        ""
    )
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50_000)] = ""
    creators: list[Creator] = Field(default_factory=list, max_length=MAX_CREATORS)
    license: License | None = None
    keywords: list[Keyword] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    related_identifiers: list[RelatedIdentifier] = Field(
        default_factory=list, max_length=MAX_RELATED
    )
    citation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] = ""


class DatasheetPatch(BaseModel):
    """Changes to a draft's datasheet: only the sections given change."""

    model_config = ConfigDict(extra="forbid")

    motivation: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    composition: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    collection: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    preprocessing: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    uses: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    distribution: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    maintenance: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    biases: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    limitations: str = Field(default="", max_length=SECTION_MAX_LENGTH)
    sensitive_information: str = Field(default="", max_length=SECTION_MAX_LENGTH)


class FileOut(BaseModel):
    name: str
    sha256: str
    size: int
    media_type: str
    download_count: int


class LabellingFacts(BaseModel):
    """What a labelling order behind a version was: its vendor and how much work came back."""

    order_id: int
    title: str
    vendor: str
    annotations: int


class ProvenanceLine(BaseModel):
    """One job, allocation or labelling order behind a version; figures are integers
    times 1,000,000 (a labelling order's ``charged_micro`` is in labelling credits)."""

    kind: Literal["job", "allocation", "labelling_order"]
    job_id: int | None
    allocation_id: int | None
    labelling_order_id: int | None = None
    program_id: int | None
    explicit: bool
    charged_micro: int
    gpu_seconds_micro: int
    kwh_micro: int
    kg_co2e_micro: int
    labelling: LabellingFacts | None = None

    def labelling_summary(self) -> str | None:
        """'Labelling order 7: 12 labelling credits, vendor Acme, 24 annotations'."""
        if self.labelling is None:
            return None
        facts = self.labelling
        return (
            f"Labelling order {facts.order_id}: {_credits(self.charged_micro)} labelling credits,"
            f" vendor {facts.vendor}, {facts.annotations:,} annotations"
        )


def _credits(micro: int) -> str:
    return f"{micro / 1_000_000:,.2f}".rstrip("0").rstrip(".")


class ProgramRef(BaseModel):
    id: int
    name: str


class ProvenanceOut(BaseModel):
    """What produced a version and what it cost, summed over its jobs."""

    lines: list[ProvenanceLine]
    gpu_hours: float
    charged_micro: int
    kwh: float
    kg_co2e: float
    programs: list[ProgramRef]
    labelling_charged_micro: int = Field(
        default=0, description="labelling credits its labelling orders charged, x 1e6"
    )

    def sentence(self) -> str:
        """'produced with 1,234 GPU-hours (2,468 credits, 310 kWh, 96 kg CO2e) from program X';
        labelling orders add 'labelled in labelling order 7 (12 labelling credits, vendor
        Acme, 24 annotations)'."""
        labelling = [line for line in self.lines if line.labelling is not None]
        parts = []
        if len(labelling) < len(self.lines):
            parts.append(
                f"produced with {self.gpu_hours:,.1f} GPU-hours ({_credits(self.charged_micro)}"
                f" credits, {self.kwh:,.1f} kWh, {self.kg_co2e:,.1f} kg CO2e)"
            )
        for line in labelling:
            order, _, facts = (line.labelling_summary() or "").partition(": ")
            parts.append(f"labelled in {order[:1].lower()}{order[1:]} ({facts})")
        text = " and ".join(parts)
        if self.programs:
            text += " from " + ", ".join(f"program {p.name}" for p in self.programs)
        return text


class VersionOut(BaseModel):
    """A version as its reader may see it; a tombstone keeps its citation, not its files."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    public_id: str
    dataset_id: int
    concept_id: str
    project_id: int
    number: int
    state: VersionState
    title: str
    description: str
    creators: list[Creator]
    license: str | None
    keywords: list[str]
    related_identifiers: list[RelatedIdentifier]
    citation: str
    datasheet: dict[str, str]
    files: list[FileOut]
    total_size: int
    manifest_sha256: str | None
    provenance: ProvenanceOut
    download_count: int
    created_at: datetime
    created_by: str
    published_at: datetime | None
    deprecated_at: datetime | None
    deprecation_note: str | None
    successor_public_id: str | None
    taken_down_at: datetime | None
    takedown_reason: str | None


class ServingVersion(BaseModel):
    """Another version that still serves some of the same bytes."""

    id: int
    public_id: str
    dataset_id: int
    number: int


class TakedownOut(VersionOut):
    """A version just taken down, and where the same bytes are still served."""

    same_files_still_served_by: list[ServingVersion] = Field(
        description="other published or deprecated versions that list any of this "
        "version's (non-empty) files by content: they stay downloadable there; take those "
        "versions down too if the reason covers them"
    )


class VersionSummary(BaseModel):
    """A line of a listing."""

    id: int
    public_id: str
    concept_id: str
    project_id: int
    number: int
    state: VersionState
    title: str
    license: str | None
    keywords: list[str]
    published_at: datetime | None
    file_count: int
    total_size: int


class VersionPage(BaseModel):
    """Versions by id, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[VersionSummary]
    next_cursor: int | None


class VerifyProblem(BaseModel):
    version_public_id: str
    name: str
    sha256: str
    problem: Literal["missing", "corrupt"]


class VerifyReport(BaseModel):
    """What re-hashing the stored files found; ``ok`` when no file is missing or corrupt."""

    files_checked: int
    blobs_checked: int
    problems: list[VerifyProblem]

    @property
    def ok(self) -> bool:
        return not self.problems
