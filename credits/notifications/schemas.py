"""Shapes the notification services return."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class OutboxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    recipient_user_id: int | None
    recipient_email: str
    kind: str
    subject: str
    body: str
    dedupe_key: str
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


class SendReport(BaseModel):
    """What one run of the sender did: ids sent, and ids that failed and will be retried."""

    sent: list[int] = []
    failed: list[int] = []
    gave_up: list[int] = []
