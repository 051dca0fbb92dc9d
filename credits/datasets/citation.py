"""How to cite a version: BibTeX and APA (7th edition, "Data set").

People are stored as "Family, Given" (a name without a comma is read as
given names then the family name); organisations as written. The year is the
publication's, or for a draft the year it was started. The URL is the DOI's
when the version has one, else the version's landing page.
"""

from __future__ import annotations

import re
import unicodedata

from credits.datasets.schemas import Creator, NameType, VersionOut
from credits.datasets.urls import version_url

APA_MAX_AUTHORS = 20
_BIBTEX_SPECIAL = re.compile(r"([\\{}&%$#_~^])")
_BIBTEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def split_name(creator: Creator) -> tuple[str, str]:
    """(family, given) of a person; (name, "") for an organisation."""
    if creator.name_type is NameType.ORGANIZATIONAL:
        return creator.name, ""
    family, comma, given = creator.name.partition(",")
    if comma:
        return family.strip(), given.strip()
    *given_parts, last = creator.name.split()
    return last, " ".join(given_parts)


def _initials(given: str) -> str:
    parts = [p for p in re.split(r"[\s]+", given) if p]
    return " ".join(
        "-".join(f"{piece[0]}." for piece in part.split("-") if piece) for part in parts
    )


def _apa_author(creator: Creator) -> str:
    family, given = split_name(creator)
    return f"{family}, {_initials(given)}" if given else family


def _apa_authors(creators: list[Creator]) -> str:
    names = [_apa_author(creator) for creator in creators]
    if len(names) > APA_MAX_AUTHORS:
        return ", ".join(names[: APA_MAX_AUTHORS - 1]) + ", . . . " + names[-1]
    if len(names) <= 1:
        # No creators yet (a draft) is "", which the citation replaces by the publisher.
        return "".join(names)
    return ", ".join(names[:-1]) + ", & " + names[-1]


def citation_year(version: VersionOut) -> int:
    return (version.published_at or version.created_at).year


def citation_url(version: VersionOut, base_url: str, doi: str | None = None) -> str:
    return f"https://doi.org/{doi}" if doi else version_url(base_url, version.public_id)


def apa(version: VersionOut, *, base_url: str, publisher: str, doi: str | None = None) -> str:
    """``Lovelace, A., & Hopper, G. (2026). Title (Version 2) [Data set]. Publisher. URL``"""
    authors = _apa_authors(version.creators) or publisher
    title = version.title.rstrip(".")
    return (
        f"{authors.rstrip('.')}. ({citation_year(version)}). {title} (Version {version.number}) "
        f"[Data set]. {publisher}. {citation_url(version, base_url, doi)}"
    )


def _bibtex_escape(text: str) -> str:
    return _BIBTEX_SPECIAL.sub(
        lambda match: _BIBTEX_REPLACEMENTS.get(match.group(1), "\\" + match.group(1)), text
    )


def _bibtex_author(creator: Creator) -> str:
    if creator.name_type is NameType.ORGANIZATIONAL:
        return "{" + _bibtex_escape(creator.name) + "}"
    family, given = split_name(creator)
    return _bibtex_escape(f"{family}, {given}" if given else family)


def bibtex_key(version: VersionOut) -> str:
    """The first creator's family name in ASCII letters, the year, the version's id start."""
    first = split_name(version.creators[0])[0] if version.creators else "dataset"
    ascii_name = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode()
    letters = re.sub(r"[^a-z]", "", ascii_name.lower()) or "dataset"
    return f"{letters}{citation_year(version)}_{version.public_id[:8]}"


def bibtex(version: VersionOut, *, base_url: str, publisher: str, doi: str | None = None) -> str:
    """A ``@misc`` entry, as DataCite and Zenodo write them for data sets."""
    fields = [
        ("author", " and ".join(_bibtex_author(c) for c in version.creators) or publisher),
        ("title", "{" + _bibtex_escape(version.title) + "}"),
        ("year", str(citation_year(version))),
        ("publisher", _bibtex_escape(publisher)),
        ("version", str(version.number)),
        ("url", citation_url(version, base_url, doi)),
        ("howpublished", "Data set"),
    ]
    if doi:
        fields.append(("doi", doi))
    body = ",\n".join(f"  {name:<12} = {{{value}}}" for name, value in fields)
    return f"@misc{{{bibtex_key(version)},\n{body}\n}}\n"
