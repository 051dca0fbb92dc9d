"""Notifications: an outbox written with the event, delivered after commit."""
