"""Notification errors."""

from __future__ import annotations

from credits.errors import NotFound


class NotificationSubjectNotFound(NotFound):
    """The proposal (or other object) a notification is about does not exist."""
