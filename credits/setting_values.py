"""What settings are made of, apart from the :class:`~credits.settings.Settings` class:
the choices a setting takes (profile, executor, sandbox, ordering, log format), the
URL schemes each service accepts, the checks on a setting's text that its
validators call, the embedded profile's defaults, and the one-line error a bad
setting gives.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from credits.secret_key_file import KeyFileTooShort, read_or_make_key

if TYPE_CHECKING:
    from credits.settings import Settings

ENV_PREFIX = "CREDITS_"
TRANSPARENCY_KEY_FILE = "transparency.key"

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "sqla+sqlite", "sqla+postgresql", "memory")
STORAGE_SCHEMES = ("file", "s3", "memory")
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster")


class Profile(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


class ExecutorName(StrEnum):
    LOCAL = "local"
    SIMULATED = "simulated"
    KUBERNETES = "kubernetes"


class LocalSandbox(StrEnum):
    """How the local executor isolates a job: bubblewrap, or not at all."""

    BWRAP = "bwrap"
    OFF = "off"


class SchedulerOrdering(StrEnum):
    FIFO = "fifo"
    FAIRSHARE = "fairshare"


class LogFormat(StrEnum):
    """How log lines are written: one JSON object a line, or plain text."""

    JSON = "json"
    TEXT = "text"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


def url_scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else ""


def split_list(value: str) -> list[str]:
    """The non-empty items of a comma-separated setting, stripped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def absolute_sqlite_url(url: str) -> str:
    """``sqlite:///relative.db`` with its path made absolute; other URLs unchanged."""
    scheme, separator, rest = url.partition(":///")
    if not separator or not scheme.endswith("sqlite"):
        return url
    path, query_separator, query = rest.partition("?")
    if not path or path.startswith("/") or path == ":memory:":
        return url
    absolute = Path(path).expanduser().resolve()
    return f"{scheme}:///{absolute}{query_separator}{query}"


def check_signer_key(value: str) -> None:
    """A transparency signer key, when given, parses (the message never quotes it)."""
    from credits.transparency.note import NoteError, parse_signer_key  # noqa: PLC0415

    if value:
        try:
            parse_signer_key(value)
        except NoteError:
            # Never the message: it could quote the secret.
            raise ValueError("not a private key string (PRIVATE+KEY+...)") from None


def check_verifier_keys(value: str) -> None:
    """Each comma-separated transparency verifier key parses."""
    from credits.transparency.note import NoteError, parse_verifier_key  # noqa: PLC0415

    for key in split_list(value):
        try:
            parse_verifier_key(key)
        except NoteError as error:
            raise ValueError(f"{key!r} is not a verifier key: {error}") from None


def check_origin(value: str) -> None:
    """A transparency log's origin is one word without spaces or '+'."""
    if value and (any(c.isspace() for c in value) or "+" in value):
        raise ValueError("an origin is one word without spaces or '+'")


def check_datacite(given: dict[str, str], *, public_url: str) -> None:
    """The DataCite settings: none, or all of them, well formed, with a public URL."""
    missing = [f"{ENV_PREFIX}{name.upper()}" for name, value in given.items() if not value]
    if len(missing) == len(given):
        return
    if missing:
        raise ValueError(f"DOIs need every DataCite setting; missing {', '.join(missing)}")
    if url_scheme(given["datacite_url"]) not in {"http", "https"}:
        raise ValueError(f"{ENV_PREFIX}DATACITE_URL must be an http(s) URL")
    if not re.fullmatch(r"10\.\d{4,9}", given["datacite_prefix"]):
        raise ValueError(f"{ENV_PREFIX}DATACITE_PREFIX must be a DOI prefix like 10.5072")
    if url_scheme(public_url) not in {"http", "https"}:
        raise ValueError(
            f"DOIs need {ENV_PREFIX}PUBLIC_URL, the http(s) origin of their landing pages"
        )


def check_limits(value: str) -> None:
    """A rate limit setting parses, like ``10/minute;100/hour``."""
    from limits import parse_many  # noqa: PLC0415 - only when the setting is read

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a list of limits like '10/minute;100/hour'") from None


def one_line(error: ValidationError) -> str:
    """The first error of a settings validation, naming its variable, in one line."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if not location:
        return f"invalid settings: {message}"
    return f"invalid setting {ENV_PREFIX}{location.upper()}: {message}"


def embedded_defaults(settings: Settings) -> Settings:
    """What the embedded profile fills in when unset: SQLite, a SQLite broker, local
    storage and a secret key kept in the var folder."""
    var = settings.var_dir
    updates: dict[str, Any] = {}
    if not settings.database_url.get_secret_value():
        updates["database_url"] = SecretStr(f"sqlite:///{var / 'credits.db'}")
    if not settings.broker_url.get_secret_value():
        updates["broker_url"] = SecretStr(f"sqla+sqlite:///{var / 'broker.db'}")
    if not settings.storage_url:
        updates["storage_url"] = f"file://{(var / 'storage').resolve()}"
    if not settings.secret_key.get_secret_value():
        try:
            updates["secret_key"] = SecretStr(read_or_make_key(var))
        except KeyFileTooShort as error:
            raise SettingsError(f"invalid setting {ENV_PREFIX}SECRET_KEY: {error}") from None
    return settings.model_copy(update=updates)
