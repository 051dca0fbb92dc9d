"""A version's metadata as documents: Croissant JSON-LD, DataCite JSON, the datasheet.

Each export is a pure function of the rendered version, the installation's
public URL and publisher name, and (for Croissant) the first bytes of its
tabular files, which :func:`tabular_heads` reads from storage. Provenance
appears in both: Croissant carries a PROV-O activity per job with its
figures, DataCite a ``Methods`` description and a ``fundingReference`` per
program whose allocations paid for the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from credits.datasets.blobs import BlobReader, read_head
from credits.datasets.citation import apa, bibtex, citation_year, split_name
from credits.datasets.identifiers import license_name, license_url
from credits.datasets.record_sets import HEAD_BYTES, TABULAR_TYPES, InferredField, infer_fields
from credits.datasets.schemas import (
    DATASHEET_SECTIONS,
    Creator,
    LabellingFacts,
    NameType,
    ProvenanceLine,
    VersionOut,
)
from credits.datasets.urls import concept_url, file_url, version_url

CROISSANT_1_0 = "http://mlcommons.org/croissant/1.0"
CROISSANT_RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"
DATACITE_SCHEMA = "http://datacite.org/schema/kernel-4"
# The Croissant 1.0 context, with PROV-O for provenance.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "prov": "http://www.w3.org/ns/prov#",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
# Datasheet sections as Croissant's Responsible AI properties; the others
# (motivation, composition, distribution) are in the datasheet document.
RAI_PROPERTIES = {
    "collection": "rai:dataCollection",
    "preprocessing": "rai:dataPreprocessingProtocol",
    "uses": "rai:dataUseCases",
    "biases": "rai:dataBiases",
    "limitations": "rai:dataLimitations",
    "sensitive_information": "rai:personalSensitiveInformation",
    "maintenance": "rai:dataReleaseMaintenancePlan",
}
MICRO = 1_000_000


@dataclass(frozen=True)
class Head:
    """The first bytes of a file; ``whole`` when they are all of it."""

    data: bytes
    whole: bool


def tabular_heads(version: VersionOut, store: BlobReader) -> dict[str, Head]:
    """The first 64 KiB of each CSV, TSV and JSON Lines file of the version."""
    return {
        file.name: Head(read_head(store, file.sha256, HEAD_BYTES), whole=file.size <= HEAD_BYTES)
        for file in version.files
        if file.media_type in TABULAR_TYPES
    }


def _orcid_url(orcid: str) -> str:
    return f"https://orcid.org/{orcid}"


def _ror_url(ror: str) -> str:
    return f"https://ror.org/{ror}"


def _croissant_creator(creator: Creator) -> dict[str, Any]:
    person = creator.name_type is NameType.PERSONAL
    node: dict[str, Any] = {"@type": "sc:Person" if person else "sc:Organization"}
    node["name"] = creator.name
    if creator.orcid:
        node["identifier"] = _orcid_url(creator.orcid)
    if creator.affiliation:
        affiliation: dict[str, Any] = {"@type": "sc:Organization", "name": creator.affiliation}
        if creator.ror:
            affiliation["identifier"] = _ror_url(creator.ror)
        node["affiliation"] = affiliation
    return node


def _file_object(version: VersionOut, base_url: str, index: int) -> dict[str, Any]:
    file = version.files[index]
    return {
        "@type": "cr:FileObject",
        "@id": f"file-{index}",
        "name": file.name,
        "contentUrl": file_url(base_url, version.public_id, file.name),
        "contentSize": f"{file.size} B",
        "encodingFormat": file.media_type,
        "sha256": file.sha256,
    }


def _record_set(file_id: str, name: str, fields: list[InferredField]) -> dict[str, Any]:
    record_id = f"{file_id}-records"
    return {
        "@type": "cr:RecordSet",
        "@id": record_id,
        "name": f"records of {name}",
        "field": [
            {
                "@type": "cr:Field",
                "@id": f"{record_id}/{index}",
                "name": field.name,
                "dataType": field.data_type,
                "source": {"fileObject": {"@id": file_id}, "extract": {"column": field.name}},
            }
            for index, field in enumerate(fields)
        ],
    }


def _provenance_nodes(version: VersionOut, base_url: str) -> list[dict[str, Any]]:
    nodes = []
    for line in version.provenance.lines:
        if line.labelling is not None:
            nodes.append(_labelling_node(version, base_url, line, line.labelling))
        if line.kind != "job":
            continue
        nodes.append(
            {
                "@type": "prov:Activity",
                "@id": f"{version_url(base_url, version.public_id)}#job-{line.job_id}",
                "name": f"GPU job {line.job_id}",
                "additionalProperty": [
                    _quantity("GPU-hours", line.gpu_seconds_micro / MICRO / 3600, "HUR"),
                    _quantity("credits charged", line.charged_micro / MICRO, None),
                    _quantity("energy", line.kwh_micro / MICRO, "KWH"),
                    _quantity("emissions (kg CO2e)", line.kg_co2e_micro / MICRO, "KGM"),
                ],
            }
        )
    return nodes


def _labelling_node(
    version: VersionOut, base_url: str, line: ProvenanceLine, facts: LabellingFacts
) -> dict[str, Any]:
    return {
        "@type": "prov:Activity",
        "@id": f"{version_url(base_url, version.public_id)}#labelling-order-{facts.order_id}",
        "name": f"Labelling order {facts.order_id}",
        "description": line.labelling_summary(),
        "additionalProperty": [
            _quantity("labelling credits charged", line.charged_micro / MICRO, None),
            _quantity("annotations", facts.annotations, None),
            {"@type": "sc:PropertyValue", "name": "vendor", "value": facts.vendor},
        ],
    }


def _quantity(name: str, value: float, unit_code: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {"@type": "sc:PropertyValue", "name": name, "value": round(value, 6)}
    if unit_code is not None:
        node["unitCode"] = unit_code
    return node


def croissant(
    version: VersionOut,
    *,
    base_url: str,
    publisher: str,
    heads: dict[str, Head],
    doi: str | None = None,
) -> dict[str, Any]:
    """Croissant 1.0 JSON-LD with its Responsible AI fields: every file with its sha256,
    a record set per CSV, TSV or JSON Lines file whose head gave fields; cited by its
    DOI once it resolves."""
    distribution = [_file_object(version, base_url, i) for i in range(len(version.files))]
    record_sets = []
    for node, file in zip(distribution, version.files, strict=True):
        head = heads.get(file.name)
        fields = [] if head is None else infer_fields(file.media_type, head.data, whole=head.whole)
        # Croissant extracts a field by its column's name: an unnamed column (the
        # index pandas writes first, say) cannot be described, so it is left out.
        fields = [field for field in fields if field.name.strip()]
        if fields:
            record_sets.append(_record_set(node["@id"], file.name, fields))
    document: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_1_0, CROISSANT_RAI_1_0],
        "name": version.title,
        "description": version.description,
        "url": version_url(base_url, version.public_id),
        "sameAs": concept_url(base_url, version.concept_id),
        "version": f"{version.number}.0.0",
        "creator": [_croissant_creator(creator) for creator in version.creators],
        "publisher": {"@type": "sc:Organization", "name": publisher},
        "keywords": version.keywords,
        "citeAs": bibtex(version, base_url=base_url, publisher=publisher, doi=doi),
        "distribution": distribution,
        "recordSet": record_sets,
        "funding": [
            {"@type": "sc:Grant", "name": program.name, "identifier": f"program-{program.id}"}
            for program in version.provenance.programs
        ],
        "prov:wasGeneratedBy": _provenance_nodes(version, base_url),
    }
    if version.license:
        document["license"] = license_url(version.license)
    if version.published_at is not None:
        document["datePublished"] = version.published_at.date().isoformat()
    for section, name in RAI_PROPERTIES.items():
        text = version.datasheet.get(section, "").strip()
        if text:
            document[name] = text
    if version.provenance.lines:
        document["rai:dataCollection"] = (
            document.get("rai:dataCollection", "") + f"\n\nThis version was "
            f"{version.provenance.sentence()}."
        ).strip()
    return document


def _datacite_creator(creator: Creator) -> dict[str, Any]:
    personal = creator.name_type is NameType.PERSONAL
    node: dict[str, Any] = {
        "name": creator.name,
        "nameType": "Personal" if personal else "Organizational",
    }
    if personal:
        family, given = split_name(creator)
        node["familyName"] = family
        if given:
            node["givenName"] = given
    if creator.orcid:
        node["nameIdentifiers"] = [
            {
                "nameIdentifier": _orcid_url(creator.orcid),
                "nameIdentifierScheme": "ORCID",
                "schemeUri": "https://orcid.org",
            }
        ]
    if creator.affiliation:
        affiliation: dict[str, Any] = {"name": creator.affiliation}
        if creator.ror:
            affiliation |= {
                "affiliationIdentifier": _ror_url(creator.ror),
                "affiliationIdentifierScheme": "ROR",
                "schemeUri": "https://ror.org",
            }
        node["affiliation"] = [affiliation]
    return node


def _datacite_related(version: VersionOut, base_url: str) -> list[dict[str, str]]:
    related = [
        {
            "relatedIdentifier": item.identifier,
            "relatedIdentifierType": item.identifier_type,
            "relationType": item.relation_type,
        }
        for item in version.related_identifiers
    ]
    related.append(
        {
            "relatedIdentifier": concept_url(base_url, version.concept_id),
            "relatedIdentifierType": "URL",
            "relationType": "IsVersionOf",
        }
    )
    if version.successor_public_id is not None:
        related.append(
            {
                "relatedIdentifier": version_url(base_url, version.successor_public_id),
                "relatedIdentifierType": "URL",
                "relationType": "IsPreviousVersionOf",
            }
        )
    return related


def _datacite_dates(version: VersionOut) -> list[dict[str, str]]:
    dates = [{"date": version.created_at.date().isoformat(), "dateType": "Created"}]
    if version.published_at is not None:
        dates.append({"date": version.published_at.date().isoformat(), "dateType": "Issued"})
    if version.taken_down_at is not None:
        dates.append(
            {
                "date": version.taken_down_at.date().isoformat(),
                "dateType": "Withdrawn",
                "dateInformation": version.takedown_reason or "",
            }
        )
    return dates


def datacite(
    version: VersionOut,
    *,
    base_url: str,
    publisher: str,
    funder_name: str,
    doi: str | None = None,
) -> dict[str, Any]:
    """DataCite Metadata Schema 4 JSON (the REST API's ``attributes``): the mandatory
    identifier (the DOI when there is one, else the landing URL), creators, title,
    publisher, publication year and resource type, and a ``fundingReference`` per
    program that funded the allocations behind it (``funder_name`` funds them all)."""
    document: dict[str, Any] = {
        "schemaVersion": DATACITE_SCHEMA,
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Dataset"},
        "creators": [_datacite_creator(creator) for creator in version.creators],
        "titles": [{"title": version.title}],
        "publisher": {"name": publisher},
        "publicationYear": str(citation_year(version)),
        "url": version_url(base_url, version.public_id),
        "alternateIdentifiers": [
            {
                "alternateIdentifier": version_url(base_url, version.public_id),
                "alternateIdentifierType": "URL",
            },
            {"alternateIdentifier": version.public_id, "alternateIdentifierType": "UUID"},
        ],
        "subjects": [{"subject": keyword} for keyword in version.keywords],
        "dates": _datacite_dates(version),
        "relatedIdentifiers": _datacite_related(version, base_url),
        "sizes": [f"{version.total_size} bytes", f"{len(version.files)} files"],
        "formats": sorted({file.media_type for file in version.files}),
        "version": str(version.number),
        "descriptions": _datacite_descriptions(version),
        "fundingReferences": [
            {
                "funderName": funder_name,
                "awardNumber": f"program-{program.id}",
                "awardTitle": program.name,
            }
            for program in version.provenance.programs
        ],
    }
    if doi:
        document["doi"] = doi
    if version.license:
        document["rightsList"] = [
            {
                "rights": license_name(version.license),
                "rightsUri": license_url(version.license),
                "rightsIdentifier": version.license.lower(),
                "rightsIdentifierScheme": "SPDX",
                "schemeUri": "https://spdx.org/licenses/",
            }
        ]
    return document


def _datacite_descriptions(version: VersionOut) -> list[dict[str, str]]:
    descriptions = []
    if version.description:
        descriptions.append({"description": version.description, "descriptionType": "Abstract"})
    if version.provenance.lines:
        descriptions.append(
            {
                "description": f"This version was {version.provenance.sentence()}.",
                "descriptionType": "Methods",
            }
        )
    return descriptions


def datasheet_markdown(
    version: VersionOut, *, base_url: str, publisher: str, doi: str | None = None
) -> str:
    """The datasheet as Markdown: the version, its citation (by its DOI once it
    resolves), provenance and every section."""
    lines = [
        f"# Datasheet: {version.title}",
        "",
        f"Version {version.number} ({version.state.value}) · licence "
        f"{version.license or 'not yet chosen'} · {version_url(base_url, version.public_id)}",
        "",
        "## How to cite",
        "",
        apa(version, base_url=base_url, publisher=publisher, doi=doi),
        "",
    ]
    if version.takedown_reason:
        lines += ["## Taken down", "", version.takedown_reason, ""]
    if version.provenance.lines:
        lines += ["## Provenance", "", f"This version was {version.provenance.sentence()}.", ""]
    for key, title in DATASHEET_SECTIONS.items():
        text = version.datasheet.get(key, "").strip()
        lines += [f"## {title}", "", text or "_Not provided._", ""]
    return "\n".join(lines)
