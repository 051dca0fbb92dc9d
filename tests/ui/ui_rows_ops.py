"""UI access rows for the ops pages: ops reach them, everyone else gets a 404."""

from __future__ import annotations

from ui_matrix import UiRow, only

OPS_ONLY = only("ops")
OPS_POST = only("ops", anonymous=400)

ROWS = [
    UiRow("GET", "/ops/pool", OPS_ONLY),
    UiRow(
        "POST",
        "/ops/pool/flavours",
        OPS_POST,
        form=lambda _: {
            "name": "h100-matrix",
            "node_label_value": "NVIDIA-H100",
            "gpu_memory_gb": "80",
            "gpus_per_node": "8",
            "description": "",
        },
    ),
    UiRow(
        "POST",
        "/ops/pool/rates",
        OPS_POST,
        form=lambda world: {"flavour": world.flavour, "credits_per_gpu_hour": "3.5"},
    ),
    UiRow("GET", "/ops/adjustments", OPS_ONLY),
    UiRow(
        "POST",
        "/ops/adjustments",
        OPS_POST,
        form=lambda world: {
            "account_id": str(world.account_a),
            "amount": "1",
            "reason": "matrix correction",
        },
    ),
    UiRow("GET", "/ops/projects", OPS_ONLY),
    UiRow(
        "POST",
        "/ops/projects/<int:project_id>/suspend",
        OPS_POST,
        {"project_id": "project_a"},
        form=lambda _: {"reason": "matrix"},
    ),
    UiRow(
        "POST",
        "/ops/projects/<int:project_id>/unsuspend",
        OPS_POST,
        {"project_id": "project_a_suspended"},
        form=lambda _: {"reason": "matrix"},
    ),
    UiRow("GET", "/ops/audit", OPS_ONLY),
    UiRow("GET", "/ops/health", OPS_ONLY),
]
