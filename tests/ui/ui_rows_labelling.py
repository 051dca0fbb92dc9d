"""UI access rows for labelling: researchers list their projects' orders and make new
ones; project A's orders are researcher A's and ops' (anyone else, a 404); ops alone
reach the vendor, price and dispute pages. Orders are those of
tests/labelling_api_world.py (path targets ``lb_*``), which the runner adds."""

from __future__ import annotations

import io
from typing import Any

from api_world import OPS, RESEARCHER_A, RESEARCHER_B
from ui_matrix import UiRow, only

READERS = only(OPS, RESEARCHER_A, RESEARCHER_B)
RESEARCHERS = only(RESEARCHER_A, RESEARCHER_B)
# Researcher B may post the form, but project A is not theirs: a form error.
CREATE = only(RESEARCHER_A, anonymous=400, researcher_b=422)
ORDER_A = only(OPS, RESEARCHER_A)
ORDER_A_POST = only(OPS, RESEARCHER_A, anonymous=400)
OPS_ONLY = only(OPS)
OPS_POST = only(OPS, anonymous=400)


def _new_order(world: Any) -> dict[str, Any]:
    return {
        "project_id": str(world.project_a),
        "vendor_id": str(world.lb_vendor),
        "title": "Matrix order",
        "schema_kind": "single_label",
        "labels": "yes\nno",
        "redundancy": "1",
        "source": "upload",
        "items_file": (io.BytesIO(b"id,text\nm1,Matrix.\n"), "items.csv"),
    }


def _order(target: str) -> dict[str, str]:
    return {"order_id": target}


ROWS = [
    UiRow("GET", "/labelling", READERS),
    UiRow("GET", "/labelling/orders/new", RESEARCHERS),
    UiRow("POST", "/labelling/orders/new", CREATE, form=_new_order),
    UiRow("GET", "/labelling/orders/<int:order_id>", ORDER_A, _order("lb_draft")),
    UiRow("POST", "/labelling/orders/<int:order_id>/quote", ORDER_A_POST, _order("lb_draft")),
    UiRow("POST", "/labelling/orders/<int:order_id>/place", ORDER_A_POST, _order("lb_quoted")),
    UiRow("POST", "/labelling/orders/<int:order_id>/cancel", ORDER_A_POST, _order("lb_draft")),
    UiRow("POST", "/labelling/orders/<int:order_id>/accept", ORDER_A_POST, _order("lb_delivered")),
    UiRow(
        "POST",
        "/labelling/orders/<int:order_id>/dispute",
        ORDER_A_POST,
        _order("lb_delivered"),
        form=lambda _: {"reason": "matrix"},
    ),
    UiRow(
        "POST",
        "/labelling/orders/<int:order_id>/annotators",
        ORDER_A_POST,
        _order("lb_draft"),
        form=lambda _: {"annotators": "annotator@example.org"},
    ),
    UiRow("GET", "/ops/labelling/vendors", OPS_ONLY),
    UiRow(
        "POST",
        "/ops/labelling/vendors",
        OPS_POST,
        form=lambda _: {
            "name": "Matrix vendor",
            "adapter": "invoice",
            "task_kinds": ["single_label"],
            "max_redundancy": "3",
        },
    ),
    UiRow(
        "POST",
        "/ops/labelling/vendors/<int:vendor_id>/retire",
        OPS_POST,
        {"vendor_id": "lb_vendor"},
    ),
    UiRow(
        "POST",
        "/ops/labelling/vendors/<int:vendor_id>/restore",
        OPS_POST,
        {"vendor_id": "lb_vendor"},
    ),
    UiRow(
        "POST",
        "/ops/labelling/prices",
        OPS_POST,
        form=lambda world: {
            "vendor_id": str(world.lb_vendor),
            "unit": "item",
            "credits_per_unit": "2",
        },
    ),
    UiRow("GET", "/ops/labelling/disputes", OPS_ONLY),
    UiRow(
        "POST",
        "/ops/labelling/orders/<int:order_id>/resolve",
        OPS_POST,
        _order("lb_disputed"),
        form=lambda _: {"resolution": "accepted", "note": "matrix"},
    ),
]
