"""A witness: co-signs the log's checkpoints only while the log grows consistently.

C2SP tlog-witness semantics with C2SP tlog-cosignature/v1 signatures
(https://c2sp.org/tlog-cosignature): the witness keeps the last checkpoint it
co-signed in a state file; for each new checkpoint it checks the log's
signature, refuses a smaller tree (a rollback) or another root at the same size
(a split view), checks a consistency proof from the old size to the new one,
and only then signs::

    cosignature/v1
    time <POSIX seconds>
    <the checkpoint's note text>

with an Ed25519 key whose id is SHA-256(name || 0x0A || 0x04 || public key)[:4];
the signature line carries base64(key id || u64 big-endian time || signature).

Only the standard library, ``cryptography``, ``requests`` and this package's
pure modules are imported: a funder runs the witness far from the platform.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from credits.transparency.checkpoint import Checkpoint
from credits.transparency.merkle import verify_consistency
from credits.transparency.note import (
    KEY_ID_SIZE,
    KEY_SIZE,
    PRIVATE_PREFIX,
    SIGNATURE_SIZE,
    MalformedNote,
    Signature,
    Verifier,
    check_key_name,
    parse_note,
    strict_b64decode,
)
from credits.transparency.sources import TIMEOUT_SECONDS, api_base
from credits.transparency.verifier import (
    VerificationFailed,
    check_growth,
    open_signed_checkpoint,
)

COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1"
MAX_TIMESTAMP = 2**63 - 1
_KEY_ID_HEX = re.compile(r"^[0-9a-f]{8}$")


class WitnessError(RuntimeError):
    """The witness could not do its round (network, state file, bad answer)."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + public_key)
    return digest.digest()[:KEY_ID_SIZE]


def signed_message(note_text: str, timestamp: int) -> bytes:
    return f"{HEADER}\ntime {timestamp}\n{note_text}".encode()


@dataclass(frozen=True, slots=True)
class CosignerVerifier:
    """A witness's public key (vkey type 0x04)."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def key_string(self) -> str:
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def timestamp_of(self, note_text: str, signature: Signature) -> int | None:
        """The time the signature states, when it is this key's cosignature of the text."""
        if (signature.name, signature.key_id) != (self.name, self.key_id):
            return None
        if len(signature.signature) != 8 + SIGNATURE_SIZE:
            return None
        timestamp = int.from_bytes(signature.signature[:8], "big")
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            key.verify(signature.signature[8:], signed_message(note_text, timestamp))
        except InvalidSignature:
            return None
        return timestamp if timestamp <= MAX_TIMESTAMP else None


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A witness's private key (its Ed25519 seed)."""

    name: str
    seed: bytes

    def __repr__(self) -> str:  # the seed is a secret
        return f"Cosigner(name={self.name!r})"

    @property
    def verifier(self) -> CosignerVerifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return CosignerVerifier(self.name, public.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def key_string(self) -> str:
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + self.seed).decode()
        return f"{PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    def cosign(self, note_text: str, timestamp: int) -> Signature:
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        signature = key.sign(signed_message(note_text, timestamp))
        return Signature(self.name, self.verifier.key_id, timestamp.to_bytes(8, "big") + signature)


def generate_cosigner(name: str) -> Cosigner:
    check_key_name(name)
    private = Ed25519PrivateKey.generate()
    return Cosigner(name, private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def parse_cosigner_verifier(text: str) -> CosignerVerifier:
    name, key = _parse(text.strip(), "witness key", private=False)
    return CosignerVerifier(name, key)


def parse_cosigner(text: str) -> Cosigner:
    text = text.strip()
    if not text.startswith(PRIVATE_PREFIX):
        raise MalformedNote(f"a witness private key starts with {PRIVATE_PREFIX!r}")
    name, seed = _parse(text[len(PRIVATE_PREFIX) :], "witness private key", private=True)
    return Cosigner(name, seed)


def _parse(text: str, what: str, *, private: bool) -> tuple[str, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3 or not _KEY_ID_HEX.match(parts[1]):
        raise MalformedNote(f"a {what} is <name>+<8 hex digits>+<base64>")
    name, id_hex, encoded = parts
    check_key_name(name)
    raw = strict_b64decode(encoded, what)
    if len(raw) != 1 + KEY_SIZE or raw[0] != COSIGNATURE_V1:
        raise MalformedNote(f"a {what} is a cosignature/v1 key (type 0x04 and 32 bytes)")
    public = raw[1:]
    if private:
        key = Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key()
        public = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if cosigner_key_id(name, public).hex() != id_hex:
        raise MalformedNote(f"the {what}'s id {id_hex} is not the id of its key and name")
    return name, raw[1:]


# The witness's round.


@dataclass(frozen=True, slots=True)
class Round:
    """What one round did: the checkpoint co-signed and the size it grew from."""

    checkpoint: Checkpoint
    previous_size: int | None
    signature_line: str


Fetch = Callable[[str, dict[str, Any]], requests.Response]
Post = Callable[[str, dict[str, Any]], requests.Response]


class LogClient:
    """The log's public API, as the witness uses it."""

    def __init__(self, url: str, *, get: Fetch | None = None, post: Post | None = None) -> None:
        self.base = api_base(url)
        session = requests.Session()
        self._get: Fetch = get or (
            lambda u, params: session.get(u, params=params, timeout=TIMEOUT_SECONDS)
        )
        self._post: Post = post or (
            lambda u, body: session.post(u, json=body, timeout=TIMEOUT_SECONDS)
        )

    def checkpoint(self) -> bytes:
        return self._ok(self._call(self._get, "checkpoint", {}), "checkpoint").content

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        response = self._call(self._get, "proof/consistency", {"from": size1, "to": size2})
        self._ok(response, "consistency proof")
        # A proxy's HTML page or a broken answer: a failed round, retried, never a crash.
        try:
            document = json.loads(response.content)
        except (ValueError, RecursionError):
            raise WitnessError("the consistency proof is not JSON") from None
        try:
            return [bytes.fromhex(h) for h in document["proof"]]
        except (KeyError, TypeError, ValueError):
            raise WitnessError("the consistency proof is not a list of hex hashes") from None

    def submit(self, note: bytes, line: str, key: str) -> None:
        body = {"checkpoint": note.decode(), "signature": line, "key": key}
        self._ok(self._call(self._post, "witnesses/cosign", body), "co-signature submission")

    def _call(self, method: Callable[..., requests.Response], path: str, arg: Any) -> Any:
        try:
            return method(f"{self.base}/{path}", arg)
        except requests.RequestException as error:
            raise WitnessError(f"cannot reach {self.base}/{path}: {error}") from None

    @staticmethod
    def _ok(response: requests.Response, what: str) -> requests.Response:
        if response.status_code not in (200, 201):
            raise WitnessError(f"{what}: HTTP {response.status_code} {response.text[:200]}")
        return response


def witness_round(
    client: LogClient,
    log_keys: Sequence[Verifier],
    state_path: Path,
    cosigner: Cosigner,
    *,
    now: Callable[[], float] = time.time,
) -> Round:
    """Fetches the latest checkpoint, checks it grew from the one in the state
    file, co-signs it, saves it as the new state, and hands the co-signature in.

    Raises VerificationFailed (ROLLBACK, SPLIT VIEW, a bad signature) without
    signing or touching the state, and WitnessError when the log or the state
    file cannot be read.
    """
    note = client.checkpoint()
    previous = load_state(state_path)
    origin = previous.origin if previous else None
    checkpoint = open_signed_checkpoint(note, log_keys, origin, what="the log's checkpoint")
    if previous is not None:
        check_growth(previous, checkpoint)
        if checkpoint.size > previous.size:
            proof = client.consistency(previous.size, checkpoint.size)
            if not verify_consistency(
                previous.size, checkpoint.size, proof, previous.root_hash, checkpoint.root_hash
            ):
                raise VerificationFailed(
                    f"SPLIT VIEW: the tree of size {checkpoint.size} (root "
                    f"{checkpoint.root_hash.hex()}) does not extend the one co-signed at size "
                    f"{previous.size} (root {previous.root_hash.hex()})"
                )
    text = parse_note(note).text
    line = cosigner.cosign(text, int(now())).line().rstrip("\n")
    save_state(state_path, checkpoint)
    client.submit(note, line, cosigner.verifier.key_string())
    return Round(checkpoint, previous.size if previous else None, line)


def load_state(path: Path) -> Checkpoint | None:
    """The checkpoint the witness co-signed last, or None on its first round."""
    try:
        document = json.loads(path.read_text())
        return Checkpoint(
            document["origin"], int(document["size"]), bytes.fromhex(document["root_hash"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise WitnessError(f"the state file {path} cannot be read: {error}") from None


def save_state(path: Path, checkpoint: Checkpoint) -> None:
    """Replaces the state file whole (write, then rename), so a crash never leaves
    half a state that would make the witness forget what it saw."""
    document = {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".witness-")
        with os.fdopen(handle, "w") as file:
            json.dump(document, file)
        Path(temporary).replace(path)
    except OSError as error:  # the round fails before handing in anything; retried
        raise WitnessError(f"the state file {path} cannot be written: {error}") from None
