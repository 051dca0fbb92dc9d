"""``credits datasets`` publish, deprecate, takedown, sync-dois and verify: a version's
life after its draft. Registered on the group in :mod:`credits.datasets.cli`."""

from __future__ import annotations

import click

from credits.cli_support import cli_settings, cli_transaction, fail, reports_errors
from credits.datasets import publishing, queries
from credits.datasets.blobs import BlobReader
from credits.datasets.cli_shared import cli_blob_store, cli_doi_registrar, tell_datacite
from credits.datasets.doi import doi_of, sync_dois
from credits.datasets.verify import verify_files
from credits.identity.service import actor_for_email
from credits.reports.energy import policy_from_settings


@click.command("publish")
@click.argument("version_ref")
@click.option("--as", "as_email", required=True)
@reports_errors
def publish(*, version_ref: str, as_email: str) -> None:
    """Publish a draft: it is frozen from then on."""
    energy = policy_from_settings(cli_settings())
    dois = cli_doi_registrar()
    with cli_transaction() as session:
        version = publishing.publish_version(
            session,
            version_id=queries.version_id_for(session, version_ref),
            actor=actor_for_email(session, as_email),
            energy=energy,
            dois=dois,
        )
        doi = doi_of(session, version.id)
    click.echo(
        f"published version {version.number} ({version.public_id}); manifest sha256 "
        f"{version.manifest_sha256}"
    )
    if doi is not None:
        click.echo(f"doi {doi[0]}: {doi[1]}")


@click.command("deprecate")
@click.argument("version_ref")
@click.option("--successor", help="The later published version that replaces it.")
@click.option("--note")
@click.option("--as", "as_email", required=True)
@reports_errors
def deprecate(*, version_ref: str, successor: str | None, note: str | None, as_email: str) -> None:
    """Mark a published version deprecated, pointing at its successor."""
    dois = cli_doi_registrar()
    with cli_transaction() as session:
        version = publishing.deprecate_version(
            session,
            version_id=queries.version_id_for(session, version_ref),
            successor_version_id=None
            if successor is None
            else queries.version_id_for(session, successor),
            note=note,
            actor=actor_for_email(session, as_email),
            dois=dois,
        )
    click.echo(f"deprecated version {version.number} ({version.public_id})")
    tell_datacite(dois, version.id)


@click.command("takedown")
@click.argument("version_ref")
@click.option(
    "--reason",
    required=True,
    help=(
        "Why, in general terms; public and permanent (the tombstone, DataCite and the"
        " transparency log): name no person."
    ),
)
@click.option("--as", "as_email", required=True, help="Email of an ops user.")
@reports_errors
def takedown(*, version_ref: str, reason: str, as_email: str) -> None:
    """Take a public version down (ops): its files are no longer served."""
    dois = cli_doi_registrar()
    with cli_transaction() as session:
        version = publishing.take_down_version(
            session,
            version_id=queries.version_id_for(session, version_ref),
            reason=reason,
            actor=actor_for_email(session, as_email),
            dois=dois,
        )
    click.echo(f"took down version {version.number} ({version.public_id})")
    if version.same_files_still_served_by:
        others = ", ".join(
            f"{other.public_id} (dataset {other.dataset_id}, version {other.number})"
            for other in version.same_files_still_served_by
        )
        click.echo(
            "warning: some of the same files are still served by "
            f"{others}; take those down too if the reason covers them",
            err=True,
        )
    tell_datacite(dois, version.id)


@click.command("sync-dois")
@click.option("--limit", type=click.IntRange(1, 10_000), default=500, show_default=True)
@reports_errors
def sync_dois_command(*, limit: int) -> None:
    """Tell DataCite what it could not be told at the time; exit 1 if any DOI failed."""
    registrar = cli_doi_registrar()
    if registrar is None:
        fail("DOIs are off: set CREDITS_DATACITE_URL, _REPOSITORY_ID, _PASSWORD and _PREFIX")
    with cli_transaction() as session:
        report = sync_dois(session, registrar, limit=limit)
    for doi in report.done:
        click.echo(f"synced {doi}")
    for doi, why in report.failed.items():
        click.echo(f"failed {doi}: {why}", err=True)
    click.echo(
        f"{len(report.done)} synced, {len(report.failed)} failed, {report.pending} still pending"
    )
    if report.failed:
        raise SystemExit(1)


@click.command("verify")
@click.argument("version_ref", required=False)
@reports_errors
def verify(*, version_ref: str | None) -> None:
    """Re-hash stored files against the manifests; exit 1 naming each missing or corrupt one."""
    store: BlobReader = cli_blob_store()
    with cli_transaction(snapshot=True) as session:
        version_id = None if version_ref is None else queries.version_id_for(session, version_ref)
        report = verify_files(session, store=store, version_id=version_id)
    for problem in report.problems:
        click.echo(
            f"{problem.problem}: {problem.name} (version {problem.version_public_id}, "
            f"sha256 {problem.sha256})",
            err=True,
        )
    click.echo(
        f"checked {report.files_checked} files ({report.blobs_checked} stored blobs): "
        f"{len(report.problems)} problems"
    )
    if not report.ok:
        raise SystemExit(1)
