"""Observability: request ids, JSON logs and Prometheus metrics (docs/operations.md)."""
