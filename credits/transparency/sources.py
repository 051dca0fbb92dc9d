"""Where the standalone verifier reads a log from: the public API or a folder.

A folder holds the same paths as the tile API (``checkpoint``, ``tile/...``)
plus ``balances.json``, the published balances at the checkpoint's size, as
``credits-verify download`` writes them. Only the standard library, ``requests``
and this package's pure modules are imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import requests

from credits.transparency.stores import FolderTileStore, TileUnreadable
from credits.transparency.tiles import TileError, TileNotFound

API_PREFIX = "/api/v1/transparency"
TIMEOUT_SECONDS = 30
CHECKPOINT_FILE = "checkpoint"
BALANCES_FILE = "balances.json"


class SourceError(RuntimeError):
    """The log could not be read (network, missing file, bad JSON)."""


class LogSource(Protocol):
    def read(self, path: str) -> bytes:
        """A tile or entry bundle; raises TileNotFound or TileError."""
        ...

    def checkpoint(self) -> bytes: ...

    def balances(self, size: int, program_id: int | None, project_id: int | None) -> Any:
        """The published balances document at ``size``, for a program, a project, or all."""
        ...


class FolderSource:
    """A folder of downloaded files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tiles = FolderTileStore(root)

    def read(self, path: str) -> bytes:
        try:
            return self._tiles.read(path)
        except TileUnreadable as error:
            # The folder is at fault, not the log: an error, not a failed check.
            raise SourceError(str(error)) from None

    def checkpoint(self) -> bytes:
        return self._file(CHECKPOINT_FILE)

    def balances(self, size: int, program_id: int | None, project_id: int | None) -> Any:
        document = _json(self._file(BALANCES_FILE), BALANCES_FILE)
        if not isinstance(document, dict) or not isinstance(document.get("accounts"), list):
            raise SourceError(f"{BALANCES_FILE} is not a balances document")
        if document.get("size") != size:
            raise SourceError(
                f"{BALANCES_FILE} is at log size {document.get('size')}, the checkpoint at {size}"
            )
        # The file holds every account; the scope is picked here as the API would.
        accounts = [
            row
            for row in document["accounts"]
            if isinstance(row, dict)
            and (program_id is None or row.get("program_id") == program_id)
            and (project_id is None or row.get("project_id") == project_id)
        ]
        return {
            **document,
            "program_id": program_id,
            "project_id": project_id,
            "accounts": accounts,
        }

    def _file(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as error:
            raise SourceError(f"cannot read {self.root / name}: {error.strerror}") from None


Getter = Callable[[str, dict[str, Any]], requests.Response]


class HttpSource:
    """The public API under ``<base>/api/v1/transparency/``."""

    def __init__(self, base_url: str, get: Getter | None = None) -> None:
        self.base = api_base(base_url)
        self._session = requests.Session()
        self._get: Getter = get or self._session_get

    def _session_get(self, url: str, params: dict[str, Any]) -> requests.Response:
        return self._session.get(url, params=params, timeout=TIMEOUT_SECONDS)

    def fetch(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = f"{self.base}/{path}"
        try:
            return self._get(url, params or {})
        except requests.RequestException as error:
            raise SourceError(f"cannot fetch {url}: {error}") from None

    def read(self, path: str) -> bytes:
        response = self.fetch(path)
        if response.status_code == 404:
            raise TileNotFound(f"no tile at {path}")
        if response.status_code != 200:
            raise TileError(f"{path}: HTTP {response.status_code}")
        return response.content

    def checkpoint(self) -> bytes:
        return self._ok(self.fetch(CHECKPOINT_FILE), CHECKPOINT_FILE).content

    def balances(self, size: int, program_id: int | None, project_id: int | None) -> Any:
        params: dict[str, Any] = {"size": size}
        if program_id is not None:
            params["program_id"] = program_id
        if project_id is not None:
            params["project_id"] = project_id
        response = self._ok(self.fetch("balances", params), "balances")
        return _json(response.content, "balances")

    @staticmethod
    def _ok(response: requests.Response, what: str) -> requests.Response:
        if response.status_code != 200:
            raise SourceError(f"{what}: HTTP {response.status_code}")
        return response


def api_base(url: str) -> str:
    """The transparency API under a site's address (or the API's own address)."""
    url = url.rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise SourceError(f"{what} is not JSON") from None


def open_source(location: str) -> LogSource:
    """An http(s) address, or a folder."""
    if location.startswith(("http://", "https://")):
        return HttpSource(location)
    root = Path(location)
    if not root.is_dir():
        raise SourceError(f"{location} is neither an http(s) address nor a folder")
    return FolderSource(root)
