"""``credits datasets``: list, show, create, edit, upload, record provenance, publish,
deprecate, take down, verify. One transaction and one service call each.

Commands that change something act as the user named by ``--as``, whose
rights the service checks; reads see every version, since whoever can run the
CLI against the database can read it all anyway. A version is named by its id
or its UUID. ``upload`` streams each file through the blob store in chunks,
then adds it to the draft. With DOIs configured, create, new-version, publish,
deprecate and takedown tell DataCite (credits/datasets/doi.py); ``sync-dois``
finishes what DataCite could not be told at the time. A version's life after its
draft (publish to verify) is in :mod:`credits.datasets.cli_lifecycle`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from credits.cli_support import (
    ROW_ID,
    cli_session_factory,
    cli_settings,
    cli_transaction,
    fail,
    reports_errors,
)
from credits.datasets import exports, provenance, queries, service, uploads
from credits.datasets.citation import apa, bibtex
from credits.datasets.cli_lifecycle import deprecate, publish, sync_dois_command, takedown, verify
from credits.datasets.cli_shared import cli_blob_store, cli_doi_registrar, tell_datacite
from credits.datasets.doi import (
    doi_of,
)
from credits.datasets.drafts import editable_draft
from credits.datasets.manifest import sha256sums
from credits.datasets.models import VersionState
from credits.datasets.schemas import VersionOut
from credits.formatting import status
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email
from credits.reports.energy import policy_from_settings
from credits.storage import safe_file_name

CLI_READER = Actor(label="cli:ops", roles=frozenset({Role.OPS}))
CHUNK_BYTES = 1024 * 1024
# One file may be at most this large unless --max-bytes says otherwise (100 GiB).
DEFAULT_MAX_FILE_BYTES = 100 * 1024**3
FORMATS = ("text", "json", "croissant", "datacite", "datasheet", "bibtex", "apa", "sha256sums")


def _base_url(base_url: str | None) -> str:
    if base_url:
        return base_url
    settings = cli_settings()
    return settings.public_url or f"http://{settings.host}:{settings.port}"


@click.group()
def datasets() -> None:
    """Dataset versions: create, describe, upload, publish, deprecate, take down, verify."""


@datasets.command("list")
@click.option("--project", type=ROW_ID, help="Only this project's datasets.")
@click.option(
    "--state", "states", multiple=True, type=click.Choice([s.value for s in VersionState])
)
@click.option("--search", help="Words to find in title, description, keywords, creators.")
@click.option("--license", "license_id", help="Only this SPDX licence.")
@click.option("--keyword", help="Only versions with this keyword.")
@click.option("--program", type=ROW_ID, help="Only versions funded by this program.")
@click.option("--limit", type=click.IntRange(1, queries.MAX_PAGE), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def list_versions(
    *,
    project: int | None,
    states: tuple[str, ...],
    search: str | None,
    license_id: str | None,
    keyword: str | None,
    program: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """Versions, newest first (every state unless --state is given)."""
    with cli_transaction(snapshot=True) as session:
        page = queries.list_versions(
            session,
            CLI_READER,
            text=search,
            license=license_id,
            keyword=keyword,
            program_id=program,
            project_id=project,
            states=[VersionState(s) for s in states] or list(VersionState),
            limit=limit,
        )
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    table = Table("id", "uuid", "project", "v", "state", "title", "licence", "files", "bytes")
    for v in page.items:
        table.add_row(
            str(v.id),
            v.public_id,
            str(v.project_id),
            str(v.number),
            status(v.state),
            v.title,
            v.license or "",
            str(v.file_count),
            f"{v.total_size:,}",
        )
    Console(width=160).print(table)


@datasets.command("show")
@click.argument("version_ref")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--base-url", help="The public origin the documents' URLs start with.")
@reports_errors
def show_version(version_ref: str, fmt: str, base_url: str | None) -> None:
    """One version, or one of its documents (Croissant, DataCite, datasheet, citations)."""
    settings = cli_settings()
    base = _base_url(base_url)
    with cli_transaction(snapshot=True) as session:
        version = queries.get_version(
            session, CLI_READER, queries.version_id_for(session, version_ref)
        )
        doi = doi_of(session, version.id)
    click.echo(_document(version, fmt, base, settings.instance_name, doi), nl=fmt != "sha256sums")


def _document(
    version: VersionOut, fmt: str, base: str, publisher: str, doi: tuple[str, str] | None
) -> str:
    cited = None if doi is None else doi[0]

    def croissant() -> str:
        heads = exports.tabular_heads(version, cli_blob_store())
        document = exports.croissant(
            version, base_url=base, publisher=publisher, heads=heads, doi=cited
        )
        return json.dumps(document, indent=2, ensure_ascii=False)

    def datacite() -> str:
        document = exports.datacite(
            version,
            base_url=base,
            publisher=publisher,
            funder_name=publisher,
            doi=cited,
        )
        return json.dumps(document, indent=2, ensure_ascii=False)

    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: version.model_dump_json(indent=2),
        "croissant": croissant,
        "datacite": datacite,
        "datasheet": lambda: exports.datasheet_markdown(
            version, base_url=base, publisher=publisher, doi=cited
        ),
        "bibtex": lambda: bibtex(version, base_url=base, publisher=publisher, doi=cited),
        "apa": lambda: apa(version, base_url=base, publisher=publisher, doi=cited),
        "sha256sums": lambda: sha256sums(version.files),
        "text": lambda: _text(version, doi),
    }
    return renderers[fmt]()


def _text(version: VersionOut, doi: tuple[str, str] | None) -> str:
    lines = [
        f"version {version.id} ({version.public_id}): {version.title!r}",
        f"dataset {version.dataset_id} (concept {version.concept_id}), project "
        f"{version.project_id}, number {version.number}, {status(version.state)}",
        f"licence: {version.license or '-'}; keywords: {', '.join(version.keywords) or '-'}",
        "creators: " + ("; ".join(c.name for c in version.creators) or "-"),
        f"manifest sha256: {version.manifest_sha256 or '(set at publication)'}",
    ]
    if doi is not None:
        lines.append(f"doi: {doi[0]} ({doi[1]} at DataCite)")
    if version.takedown_reason:
        lines.append(f"taken down: {version.takedown_reason}")
    if version.provenance.lines:
        lines.append(version.provenance.sentence())
    lines += [f"  {f.sha256}  {f.size:>14,}  {f.name}" for f in version.files]
    return "\n".join(lines)


@datasets.command("create")
@click.option("--project", type=ROW_ID, required=True)
@click.option("--title", required=True)
@click.option("--as", "as_email", required=True, help="Email of a project member or ops user.")
@reports_errors
def create_dataset(*, project: int, title: str, as_email: str) -> None:
    """A new dataset with its first version, a draft."""
    dois = cli_doi_registrar()
    with cli_transaction() as session:
        version = service.create_dataset(
            session,
            project_id=project,
            title=title,
            actor=actor_for_email(session, as_email),
            dois=dois,
        )
    click.echo(
        f"created dataset {version.dataset_id} (concept {version.concept_id}), draft "
        f"version {version.id} ({version.public_id})"
    )
    tell_datacite(dois, version.id)


@datasets.command("new-version")
@click.argument("dataset_id", type=ROW_ID)
@click.option("--as", "as_email", required=True)
@reports_errors
def new_version(*, dataset_id: int, as_email: str) -> None:
    """A new draft copying the newest public version's metadata and files."""
    dois = cli_doi_registrar()
    with cli_transaction() as session:
        version = service.new_version(
            session, dataset_id=dataset_id, actor=actor_for_email(session, as_email), dois=dois
        )
    click.echo(f"draft version {version.number}: {version.id} ({version.public_id})")
    tell_datacite(dois, version.id)


@datasets.command("edit")
@click.argument("version_ref")
@click.option(
    "--from-json",
    "source",
    type=click.File("r"),
    required=True,
    help='A JSON file {"metadata": {...}, "datasheet": {...}}; the fields given change.',
)
@click.option("--as", "as_email", required=True)
@reports_errors
def edit_draft(*, version_ref: str, source: Any, as_email: str) -> None:
    """Set a draft's metadata and datasheet from a JSON file."""
    try:
        document = json.load(source)
    except ValueError as error:
        fail(f"the JSON file does not parse: {error}")
    if not isinstance(document, dict) or set(document) - {"metadata", "datasheet"}:
        fail('the JSON file must be an object with "metadata" and/or "datasheet"')
    with cli_transaction() as session:
        actor = actor_for_email(session, as_email)
        version_id = queries.version_id_for(session, version_ref)
        if "metadata" in document:
            service.update_metadata(
                session, version_id=version_id, changes=document["metadata"], actor=actor
            )
        if "datasheet" in document:
            service.update_datasheet(
                session, version_id=version_id, changes=document["datasheet"], actor=actor
            )
    click.echo(f"updated version {version_id}")


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


@datasets.command("upload")
@click.argument("version_ref")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--name", help="The name in the dataset (one file only; default: the file's name).")
@click.option(
    "--max-bytes", type=click.IntRange(0), default=DEFAULT_MAX_FILE_BYTES, show_default=True
)
@click.option("--as", "as_email", required=True)
@reports_errors
def upload(
    *, version_ref: str, paths: tuple[Path, ...], name: str | None, max_bytes: int, as_email: str
) -> None:
    """Stream local files into storage and add them to a draft, within
    CREDITS_DATASET_MAX_VERSION_BYTES for the version's files together."""
    if name is not None and len(paths) != 1:
        fail("--name names one file; give one path with it")
    store = cli_blob_store()
    max_version_bytes = cli_settings().dataset_max_version_bytes
    with cli_transaction() as session:
        # Refuse before streaming anything: the draft must exist and be the actor's to change.
        version_id = queries.version_id_for(session, version_ref)
        actor = actor_for_email(session, as_email)
        editable_draft(session, actor, version_id)
    factory = cli_session_factory()
    for path in paths:
        target = safe_file_name(name if name is not None else path.name)
        # A name taken or a file that cannot fit is refused before it is streamed.
        uploads.admit_file(
            factory,
            actor=actor,
            version_id=version_id,
            name=target,
            size=path.stat().st_size,
            max_version_bytes=max_version_bytes,
        )
        blob = store.put_stream(_chunks(path), max_bytes=max_bytes)
        uploads.attach_blob(
            factory,
            store,
            actor=actor,
            version_id=version_id,
            name=target,
            blob=blob,
            max_version_bytes=max_version_bytes,
        )
        click.echo(f"{blob.sha256}  {blob.size:>14,}  {target}")


@datasets.command("provenance")
@click.argument("version_ref")
@click.option(
    "--job", "jobs", type=ROW_ID, multiple=True, help="A finished GPU job of the project."
)
@click.option("--allocation", "allocations", type=ROW_ID, multiple=True)
@click.option("--as", "as_email", required=True)
@reports_errors
def record(
    *, version_ref: str, jobs: tuple[int, ...], allocations: tuple[int, ...], as_email: str
) -> None:
    """Record the jobs and allocations that produced a draft."""
    energy = policy_from_settings(cli_settings())
    with cli_transaction() as session:
        summary = provenance.record_provenance(
            session,
            version_id=queries.version_id_for(session, version_ref),
            actor=actor_for_email(session, as_email),
            energy=energy,
            job_ids=jobs,
            allocation_ids=allocations,
        )
    click.echo(summary.sentence())


for _command in (publish, deprecate, takedown, sync_dois_command, verify):
    datasets.add_command(_command)
