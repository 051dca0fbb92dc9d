"""What usage ingestion refuses as a whole batch."""

from __future__ import annotations

from credits.errors import InvalidInput


class ImplausibleUsage(InvalidInput):
    """A batch holds a record claiming more than its window and GPUs hold; ``errors``
    names each such record, and nothing of the batch is stored."""

    slug = "implausible-usage"
    title = "Implausible usage"
