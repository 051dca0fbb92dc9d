"""The ops pool page shows each flavour's cap on checkpoint grace, and the add form sets it."""

from __future__ import annotations

import pytest
from api_world import OPS, build_world, world_executor
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.pool import service as pool
from credits.pool.errors import FlavourNotFound
from credits.settings import load_settings

CSRF = "grace-csrf-token"
FORM = {
    "name": "h100-80gb",
    "node_label_value": "NVIDIA-H100",
    "gpu_memory_gb": "80",
    "gpus_per_node": "8",
    "description": "",
    "csrf_token": CSRF,
}


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def test_ops_add_a_flavour_with_its_grace_cap_and_see_it_listed(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    client = app.test_client()
    sign_in_as(client, world.user_ids[OPS], csrf_token=CSRF)

    added = client.post("/ops/pool/flavours", data=FORM | {"max_checkpoint_grace_seconds": "45"})

    assert added.status_code == 302, added.get_data(as_text=True)
    assert pool.get_flavour(session, name="h100-80gb").max_checkpoint_grace_seconds == 45
    page = client.get("/ops/pool").get_data(as_text=True)
    assert '<td class="num">45 s</td>' in page


@pytest.mark.parametrize("cap", ["-1", "soon", "86401"])
def test_a_bad_grace_cap_is_marked_on_the_form_and_adds_nothing(
    app: Flask, session: Session, cap: str
) -> None:
    world = build_world(session)
    client = app.test_client()
    sign_in_as(client, world.user_ids[OPS], csrf_token=CSRF)

    refused = client.post("/ops/pool/flavours", data=FORM | {"max_checkpoint_grace_seconds": cap})

    assert refused.status_code == 400
    assert 'id="e-max_checkpoint_grace_seconds"' in refused.get_data(as_text=True)
    with pytest.raises(FlavourNotFound):
        pool.get_flavour(session, name="h100-80gb")
