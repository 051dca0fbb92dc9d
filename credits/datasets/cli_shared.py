"""What the ``credits datasets`` commands share: the blob store and DOI registrar of an
invocation (a test may place its own in the root context's ``obj``), and telling
DataCite after a commit."""

from __future__ import annotations

import click

from credits.cli_support import cli_session_factory, cli_settings
from credits.datasets.doi import DoiRegistrar, doi_registrar_from_settings, finish_after_commit
from credits.storage import BlobStore, blob_store_from_settings


def cli_blob_store() -> BlobStore:
    """The store of this invocation (tests may place their own in ``obj["blob_store"]``)."""
    obj = click.get_current_context().find_root().obj or {}
    store = obj.get("blob_store")
    if store is not None:
        return store  # type: ignore[no-any-return]  # placed by a test, a BlobStore
    return blob_store_from_settings(cli_settings())


def cli_doi_registrar() -> DoiRegistrar | None:
    """The DOI registrar of this invocation, None when DOIs are off (tests may place
    their own in ``obj["doi_registrar"]``)."""
    obj = click.get_current_context().find_root().obj or {}
    if "doi_registrar" in obj:
        return obj["doi_registrar"]  # type: ignore[no-any-return]  # placed by a test
    return doi_registrar_from_settings(cli_settings())


def tell_datacite(registrar: DoiRegistrar | None, version_id: int) -> None:
    """After the commit: DataCite hears of the change now, or the sweep retries."""
    report = finish_after_commit(cli_session_factory(), registrar, version_id)
    if report is None:
        return
    for doi in report.done:
        click.echo(f"doi {doi}: up to date at DataCite")
    for doi, why in report.failed.items():
        click.echo(f"warning: doi {doi} left pending ({why}); `credits datasets sync-dois` retries")
