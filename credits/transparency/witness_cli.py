"""``credits transparency witness`` and ``witness-key``: the witness a funder runs
next to, not inside, the platform. Neither touches the platform's database."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import click

from credits.cli_support import fail
from credits.transparency.note import NoteError, parse_verifier_key
from credits.transparency.verifier import VerificationFailed
from credits.transparency.witness import (
    Cosigner,
    LogClient,
    WitnessError,
    generate_cosigner,
    parse_cosigner,
    witness_round,
)

logger = logging.getLogger(__name__)


@click.command()
@click.option("--log", "log_url", required=True, help="The log's site, https://...")
@click.option("--key", "keys", multiple=True, required=True, help="The log's verifier key.")
@click.option("--state", type=click.Path(path_type=Path), required=True, help="State file.")
@click.option(
    "--signer-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The witness's private key file (credits transparency witness-key).",
)
@click.option("--once", is_flag=True, help="One round, then exit.")
@click.option("--interval", type=click.IntRange(min=1), default=60, show_default=True)
def witness(  # noqa: PLR0917 - click passes every option as an argument
    log_url: str, keys: tuple[str, ...], state: Path, signer_key: Path, once: bool, interval: int
) -> None:
    """Co-sign the log's checkpoints while it grows consistently.

    Each round fetches the latest checkpoint, checks its signature and a
    consistency proof from the last one co-signed (kept in --state), co-signs
    it and hands the co-signature to the log. A rollback or a split view is
    refused: nothing is signed, the error names both roots, and the command
    exits 1."""
    try:
        log_keys = [parse_verifier_key(key) for key in keys]
    except NoteError as error:
        fail(f"--key: {error}")
    cosigner = _cosigner(signer_key)
    client = LogClient(log_url)
    while True:
        try:
            done = witness_round(client, log_keys, state, cosigner)
        except VerificationFailed as error:
            fail(f"refusing to co-sign: {error}")
        except WitnessError as error:
            if once:
                fail(str(error))
            logger.warning("witness round failed, retrying in %ss: %s", interval, error)
        else:
            grew = "first" if done.previous_size is None else f"from {done.previous_size}"
            click.echo(
                f"co-signed size {done.checkpoint.size} ({grew}), "
                f"root {done.checkpoint.root_hash.hex()}"
            )
        if once:
            return
        time.sleep(interval)


def _cosigner(path: Path) -> Cosigner:
    try:
        return parse_cosigner(path.read_text())
    except (OSError, NoteError) as error:
        fail(f"{path} does not hold a witness private key: {error}")


@click.command("witness-key")
@click.option("--name", required=True, help="The witness's name, e.g. witness.funder.example/w1")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def witness_key(name: str, out: Path) -> None:
    """Make a witness key: the private key goes to --out (mode 0600), the public key
    is printed for the log's CREDITS_TRANSPARENCY_WITNESS_KEYS."""
    try:
        cosigner = generate_cosigner(name)
    except NoteError as error:
        fail(str(error))
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{out} exists; a witness keeps its key")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(cosigner.key_string() + "\n")
    click.echo(cosigner.verifier.key_string())
