"""The public transparency page: the log's latest checkpoint, its size, its
witnesses, how far it trails the database, and the command that checks it all.

No sign-in. The figures come from the same services as the public API under
/api/v1/transparency (credits/transparency/published.py and service.py).
"""

from __future__ import annotations

import shlex

from flask import Blueprint, url_for
from flask.typing import ResponseReturnValue

from admin_ui.web import render, transaction
from credits.api.auth import credits_extension
from credits.api.public_url import public_base_url
from credits.transparency import published
from credits.transparency.service import latest_checkpoint, log_status

blueprint = Blueprint("ui_transparency", __name__)


def verify_command(site: str, keys: list[str], index: int | None = None) -> str:
    """The ``credits-verify`` line a reader copies: every accepted key, an entry."""
    words = ["credits-verify", site]
    for key in keys:
        words += ["--key", key]
    if index is not None:
        words += ["--index", str(index)]
    return shlex.join(words)


def proof_url(index: int) -> str:
    """Where a page's "verify" link points: the entry's inclusion proof."""
    return url_for("transparency.get_inclusion_proof", index=index)


@blueprint.get("/transparency")
def transparency_page() -> ResponseReturnValue:
    settings = credits_extension().settings
    with transaction() as db:
        status = log_status(db, settings)
        note = latest_checkpoint(db)
        witnesses = published.witnesses(db)
    site = public_base_url().rstrip("/")
    return render(
        "transparency.html",
        status=status,
        note=note.decode() if note else None,
        witnesses=witnesses.witnesses,
        command=verify_command(site, status.verifier_keys),
        download=shlex.join(["credits-verify", "download", site, "credits-log"]),
    )
