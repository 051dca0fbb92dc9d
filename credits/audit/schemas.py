from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_type: str
    actor: str
    subject_type: str
    subject_id: str
    occurred_at: datetime
    canonical_json: str
    leaf_hash: str


class AuditMismatch(BaseModel):
    event_id: int
    stored: str
