"""The UI's page blueprints, in one list so that app set-up stays one call."""

from __future__ import annotations

import importlib

from flask import Blueprint

# Each module has a ``blueprint``; a module not written yet is simply absent.
PAGE_MODULES = (
    "admin_ui.home",
    "admin_ui.researcher",
    "admin_ui.jobs_pages",
    "admin_ui.review",
    "admin_ui.funder",
    "admin_ui.funder_tranches",
    "admin_ui.ops",
    "admin_ui.datasets_pages",
    "admin_ui.transparency_pages",
    "admin_ui.labelling_pages",
    "admin_ui.labelling_ops",
    "admin_ui.annotate_pages",
    "admin_ui.members",
    "admin_ui.proposal_actions",
    "admin_ui.proposal_attachments",
    "admin_ui.program_edit",
    "admin_ui.account",
    "admin_ui.open_calls",
    "admin_ui.password_reset",
)


def blueprints() -> list[Blueprint]:
    found = []
    for name in PAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        found.append(module.blueprint)
    return found
