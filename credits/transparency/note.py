"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures.

A note is UTF-8 text ending in a newline, a blank line, then one or more lines
``— <key name> <base64(key id || signature)>``. A key is named, and identified
by its name and a 4-byte key id: the first four bytes of SHA-256(name || 0x0A
|| 0x01 || public key). Keys travel as strings, after Go's note package::

    verifier:  <name>+<key id, 8 hex digits>+<base64(0x01 || public key)>
    signer:    PRIVATE+KEY+<name>+<key id>+<base64(0x01 || private key seed)>

Parsing is strict: anything off the format is refused with MalformedNote.
Opening a note ignores signatures by unknown keys (witnesses' co-signatures,
rotated keys), refuses the note if a known key's signature fails, and needs at
least one known key's signature to verify.

Only the standard library and ``cryptography`` are imported: the standalone
verifier uses this module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ED25519 = 0x01
KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4
# The spec asks verifiers to accept at least 16 signatures and to bound the rest.
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 1 << 20
PRIVATE_PREFIX = "PRIVATE+KEY+"
SIGNATURE_DASH = "\u2014"

# Control characters other than newline, and every Unicode space in names.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# (``\s`` on str matches every Unicode space.)
_NAME_FORBIDDEN = re.compile(r"[\s+]")
_KEY_ID_HEX = re.compile(r"^[0-9a-f]{8}$")


class NoteError(ValueError):
    """A note or key that cannot be used."""


class MalformedNote(NoteError):
    """Text that is not a well-formed signed note, key or signature."""


class UnverifiedNote(NoteError):
    """No known key's signature verifies, or a known key's signature fails."""


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: the signer's key name, key id and signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        encoded = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_DASH} {self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed note: its text (ending in a newline) and its signatures."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> bytes:
        lines = "".join(signature.line() for signature in self.signatures)
        return f"{self.text}\n{lines}".encode()


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key that checks a name's Ed25519 signatures."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def key_string(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """A named Ed25519 private key (its 32-byte seed)."""

    name: str
    seed: bytes

    def __repr__(self) -> str:  # the seed is a secret: keep it out of logs
        return f"Signer(name={self.name!r})"

    @property
    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return Verifier(self.name, public.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def key_string(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.seed).decode()
        return f"{PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    def sign(self, text: bytes) -> Signature:
        signature = Ed25519PrivateKey.from_private_bytes(self.seed).sign(text)
        return Signature(self.name, self.verifier.key_id, signature)


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return digest[:KEY_ID_SIZE]


def generate_signer(name: str) -> Signer:
    """A new random key named ``name``."""
    check_key_name(name)
    private = Ed25519PrivateKey.generate()
    return Signer(name, private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def check_key_name(name: str) -> None:
    if not name or _NAME_FORBIDDEN.search(name) or _CONTROL.search(name):
        raise MalformedNote(f"a key name is non-empty, without spaces or '+': {name!r}")


def parse_verifier_key(text: str) -> Verifier:
    """A verifier key string ``<name>+<key id hex>+<base64(0x01 || public key)>``."""
    name, key = _parse_key_string(text.strip(), "verifier key")
    return Verifier(name, key)


def parse_signer_key(text: str) -> Signer:
    """A private key string ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``."""
    text = text.strip()
    if not text.startswith(PRIVATE_PREFIX):
        raise MalformedNote(f"a private key string starts with {PRIVATE_PREFIX!r}")
    name, seed = _parse_key_string(text[len(PRIVATE_PREFIX) :], "private key")
    return Signer(name, seed)


def _parse_key_string(text: str, what: str) -> tuple[str, bytes]:
    """(name, key bytes) from ``name+hexid+base64``, checking the id of public keys
    here and of private keys against the public key they derive."""
    # Standard base64 may hold '+', so only the first two separate fields.
    parts = text.split("+", 2)
    if len(parts) != 3 or not _KEY_ID_HEX.match(parts[1]):
        raise MalformedNote(f"a {what} is <name>+<8 hex digits>+<base64>")
    name, id_hex, encoded = parts
    check_key_name(name)
    raw = strict_b64decode(encoded, what)
    if len(raw) != 1 + KEY_SIZE or raw[0] != ED25519:
        raise MalformedNote(f"a {what} is an Ed25519 key (type 0x01 and 32 bytes)")
    key = raw[1:]
    public = key if what == "verifier key" else _public_of(key)
    if key_id(name, public).hex() != id_hex:
        raise MalformedNote(f"the {what}'s id {id_hex} is not the id of its key and name")
    return name, key


def _public_of(seed: bytes) -> bytes:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def strict_b64decode(text: str, what: str) -> bytes:
    """Standard padded base64 in its one canonical spelling, or MalformedNote."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedNote(f"the {what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise MalformedNote(f"the {what} is not canonical base64")
    return raw


def sign_note(text: str, signers: Sequence[Signer]) -> bytes:
    """The note of ``text`` (ending in a newline) signed by each signer in turn."""
    if not signers:
        raise NoteError("a note needs at least one signer")
    check_text(text)
    encoded = text.encode()
    return Note(text, tuple(signer.sign(encoded) for signer in signers)).encode()


def add_signatures(data: bytes, signers: Sequence[Signer]) -> bytes:
    """The note with the signers' signatures added after the ones it has."""
    note = parse_note(data)
    added = tuple(signer.sign(note.text.encode()) for signer in signers)
    return Note(note.text, note.signatures + added).encode()


def check_text(text: str) -> None:
    """Refuses note text that is empty, lacks its final newline, or holds controls."""
    if not text.endswith("\n"):
        raise MalformedNote("note text ends with a newline")
    if _CONTROL.search(text):
        raise MalformedNote("note text holds a control character other than newline")


def parse_note(data: bytes) -> Note:
    """The text and signatures of a signed note; MalformedNote for anything off."""
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedNote(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("a note is UTF-8") from None
    if _CONTROL.search(whole):
        raise MalformedNote("a note holds no control characters other than newline")
    # The text ends at the last blank line; signature lines follow it.
    split = whole.rfind("\n\n")
    if split < 0 or not whole.endswith("\n"):
        raise MalformedNote("a note is text, a blank line, and signature lines")
    text, block = whole[: split + 1], whole[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise MalformedNote("a note has at least one signature line")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"a note has at most {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> Signature:
    prefix = SIGNATURE_DASH + " "
    if not line.startswith(prefix):
        raise MalformedNote(f"a signature line starts with an em dash and a space: {line!r}")
    fields = line[len(prefix) :].split(" ")
    if len(fields) != 2:
        raise MalformedNote(f"a signature line is '— <name> <base64>': {line!r}")
    name, encoded = fields
    check_key_name(name)
    raw = strict_b64decode(encoded, "signature")
    if len(raw) <= KEY_ID_SIZE:
        raise MalformedNote(f"the signature of {name} holds no signature after its key id")
    return Signature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note whose signatures were checked: its text, the known keys whose
    signatures verified, and the signatures of keys not known (kept as they are)."""

    text: str
    verified_by: tuple[Verifier, ...]
    unknown: tuple[Signature, ...]


def open_note(data: bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Parses and verifies a note against the known keys.

    Raises MalformedNote, or UnverifiedNote when a known key's signature fails
    or no known key signed it.
    """
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    text = note.text.encode()
    verified: list[Verifier] = []
    unknown: list[Signature] = []
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            unknown.append(signature)
        elif not verifier.verify(text, signature.signature):
            raise UnverifiedNote(f"the signature of {signature.name} does not verify")
        elif verifier not in verified:
            verified.append(verifier)
    if not verified:
        raise UnverifiedNote("no signature by a known key")
    return OpenedNote(note.text, tuple(verified), tuple(unknown))
