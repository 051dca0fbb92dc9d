"""Signed notes and checkpoints: keys, signing, strict parsing, rotation, tampering.

The PeterNeumann key pair and signed note are the example of Go's
golang.org/x/mod/sumdb/note package documentation (BSD-3-Clause); Ed25519 is
deterministic, so signing its text with its key must give its note byte for byte.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credits.transparency.checkpoint import (
    Checkpoint,
    MalformedCheckpoint,
    open_checkpoint,
    parse_checkpoint_text,
    sign_checkpoint,
)
from credits.transparency.merkle import EMPTY_ROOT, MemoryTree, leaf_hash
from credits.transparency.note import (
    MalformedNote,
    Note,
    NoteError,
    Signature,
    UnverifiedNote,
    add_signatures,
    generate_signer,
    key_id,
    open_note,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()

ORIGIN = "credits.example.org/log"
SIGNER = generate_signer(ORIGIN)
OLD_SIGNER = generate_signer(ORIGIN)
WITNESS = generate_signer("witness.example.org/funder")


def test_signing_the_go_example_gives_the_published_note_byte_for_byte() -> None:
    signer = parse_signer_key(GO_SIGNER)
    assert signer.verifier == parse_verifier_key(GO_VERIFIER)
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    assert open_note(GO_NOTE, [parse_verifier_key(GO_VERIFIER)]).text == GO_TEXT


def test_key_strings_round_trip_and_carry_the_key_id_of_name_and_key() -> None:
    assert parse_signer_key(SIGNER.key_string()) == SIGNER
    verifier = parse_verifier_key(SIGNER.verifier.key_string())
    assert verifier == SIGNER.verifier
    assert SIGNER.verifier.key_string().split("+")[1] == key_id(ORIGIN, verifier.public_key).hex()
    assert "seed" not in repr(SIGNER) and SIGNER.seed.hex() not in repr(SIGNER)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case id
        "PeterNeuman+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # other name
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Alpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
    ],
)
def test_malformed_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(MalformedNote):
        parse_verifier_key(key)


def test_a_private_key_needs_its_prefix_and_matching_id() -> None:
    with pytest.raises(MalformedNote):
        parse_signer_key(GO_SIGNER.removeprefix("PRIVATE+KEY+"))
    with pytest.raises(MalformedNote):
        parse_signer_key(GO_SIGNER.replace("c74f20a3", "c74f20a4"))


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u2003b", "a\tb"])
def test_key_names_with_spaces_or_plus_are_refused(name: str) -> None:
    with pytest.raises(MalformedNote):
        generate_signer(name)


def checkpoint(size: int = 42, root: bytes = b"\x07" * 32) -> Checkpoint:
    return Checkpoint(ORIGIN, size, root)


def test_a_checkpoint_signed_by_the_log_opens_with_its_key() -> None:
    data = sign_checkpoint(checkpoint(), [SIGNER])
    opened = open_checkpoint(data, origin=ORIGIN, verifiers=[SIGNER.verifier])
    assert opened.checkpoint == checkpoint()
    assert opened.note.verified_by == (SIGNER.verifier,)
    root = base64.b64encode(bytes([7] * 32)).decode()
    assert data.decode().split("\n\n")[0] == f"{ORIGIN}\n42\n{root}"


def test_an_old_checkpoint_stays_verifiable_after_key_rotation() -> None:
    old = sign_checkpoint(checkpoint(10), [OLD_SIGNER])
    # During rotation the log signs with both keys; afterwards with the new one.
    both = sign_checkpoint(checkpoint(20), [OLD_SIGNER, SIGNER])
    new = sign_checkpoint(checkpoint(30), [SIGNER])
    keys = [SIGNER.verifier, OLD_SIGNER.verifier]
    assert open_checkpoint(old, origin=ORIGIN, verifiers=keys).checkpoint.size == 10
    assert len(open_checkpoint(both, origin=ORIGIN, verifiers=keys).note.verified_by) == 2
    assert open_checkpoint(new, origin=ORIGIN, verifiers=keys).checkpoint.size == 30
    with pytest.raises(UnverifiedNote):
        open_checkpoint(old, origin=ORIGIN, verifiers=[SIGNER.verifier])


def test_co_signatures_by_unknown_witnesses_are_kept_and_tolerated() -> None:
    data = add_signatures(sign_checkpoint(checkpoint(), [SIGNER]), [WITNESS])
    opened = open_checkpoint(data, origin=ORIGIN, verifiers=[SIGNER.verifier])
    assert [s.name for s in opened.note.unknown] == [WITNESS.name]
    both = open_note(data, [SIGNER.verifier, WITNESS.verifier])
    assert both.verified_by == (SIGNER.verifier, WITNESS.verifier)


def test_a_signature_of_a_known_key_that_fails_rejects_the_note() -> None:
    data = sign_checkpoint(checkpoint(), [SIGNER])
    note = parse_note(data)
    good = note.signatures[0]
    forged = Signature(good.name, good.key_id, bytes(64))
    tampered = Note(note.text, (good, forged)).encode()
    with pytest.raises(UnverifiedNote):
        open_note(tampered, [SIGNER.verifier])


def test_a_signature_with_a_known_name_but_another_id_is_ignored() -> None:
    impostor = generate_signer(ORIGIN)
    data = sign_checkpoint(checkpoint(), [impostor])
    with pytest.raises(UnverifiedNote, match="no signature by a known key"):
        open_checkpoint(data, origin=ORIGIN, verifiers=[SIGNER.verifier])


def test_a_checkpoint_of_another_log_is_refused() -> None:
    other = Checkpoint("other.example/log", 1, EMPTY_ROOT)
    data = sign_checkpoint(other, [SIGNER])
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(data, origin=ORIGIN, verifiers=[SIGNER.verifier])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_flipped_byte_in_a_signed_checkpoint_fails_to_open(data: st.DataObject) -> None:
    signed = sign_checkpoint(checkpoint(), [SIGNER])
    at = data.draw(st.integers(min_value=0, max_value=len(signed) - 1))
    flipped = bytearray(signed)
    flipped[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(NoteError):
        open_checkpoint(bytes(flipped), origin=ORIGIN, verifiers=[SIGNER.verifier])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_flipped_byte_in_a_co_signature_never_counts_as_the_witness(
    data: st.DataObject,
) -> None:
    logged = sign_checkpoint(checkpoint(), [SIGNER])
    signed = add_signatures(logged, [WITNESS])
    at = data.draw(st.integers(min_value=len(logged), max_value=len(signed) - 1))
    flipped = bytearray(signed)
    flipped[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    keys = [SIGNER.verifier, WITNESS.verifier]
    try:
        opened = open_checkpoint(bytes(flipped), origin=ORIGIN, verifiers=keys)
    except NoteError:
        return
    # Changed into another name or key id, it is some unknown signer's, as the spec wants.
    assert WITNESS.verifier not in opened.note.verified_by


SIG = GO_NOTE.decode().rsplit("\n", 2)[1]  # the Go example's signature line


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"text\n",
        b"text\n\n",  # no signature line
        f"text\n{SIG}\n".encode(),  # no blank line
        f"text\n\n{SIG}".encode(),  # no final newline
        f"text\n\n{SIG}\n\n".encode(),
        f"text\n\n{SIG.replace(chr(0x2014), '-')}\n".encode(),
        f"text\n\n{SIG.replace(' ', '  ', 1)}\n".encode(),
        f"text\n\n{SIG} extra\n".encode(),
        f"text\n\n{SIG[:-1]}\n".encode(),  # not canonical base64
        f"text\n\n{SIG[:-4]}*AM=\n".encode(),  # not base64 at all
        f"text\n\n{SIG.replace('PeterNeumann', 'Peter+Neumann')}\n".encode(),
        "text\n\n\u2014 PeterNeumann AAAA\n".encode(),  # a key id and no signature
        f"te\x00xt\n\n{SIG}\n".encode(),
        f"text\r\n\n{SIG}\n".encode(),
        b"text\xff\n\n" + SIG.encode() + b"\n",
        f"text\n\n{(SIG + chr(10)) * 65}".encode(),  # more signatures than allowed
    ],
)
def test_malformed_notes_are_refused(note: bytes) -> None:
    with pytest.raises(MalformedNote):
        parse_note(note)


def test_a_note_text_may_hold_blank_lines_the_last_one_separates() -> None:
    data = sign_note("one\n\ntwo\n", [SIGNER])
    assert open_note(data, [SIGNER.verifier]).text == "one\n\ntwo\n"


@given(st.binary(max_size=400))
def test_arbitrary_bytes_either_parse_or_are_refused_as_malformed(data: bytes) -> None:
    try:
        note = parse_note(data)
    except MalformedNote:
        return
    assert note.encode() == data


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n42\n",
        "origin\n042\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "origin\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "origin\n4 2\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==\n",  # 31 bytes
        "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd=\n",  # not canonical
        "\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n",  # empty extension line
        "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",  # no final newline
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        parse_checkpoint_text(text)


def test_checkpoint_extension_lines_are_kept() -> None:
    text = f"{ORIGIN}\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\nrekor-like extension\n"
    parsed = parse_checkpoint_text(text)
    assert parsed.extensions == ("rekor-like extension",)
    assert parsed.text() == text


def test_the_worked_example_of_the_docs_holds() -> None:
    """docs/transparency.md: three entries, their root, and the example key's checkpoint."""
    tree = MemoryTree()
    for entry in (b'{"kind":"award","n":0}', b'{"kind":"hold","n":1}', b'{"kind":"capture","n":2}'):
        tree.append(leaf_hash(entry))
    signer = parse_signer_key(
        "PRIVATE+KEY+credits.example.org/log+5e37671f+ATqZiXvGpLqpxBrN4JuCxsGND14UwTpdZ/bPRxCNk8fY"
    )
    verifier = parse_verifier_key(
        "credits.example.org/log+5e37671f+AfiCOf4Py6cb0RYeU/wbzdTslkwiL3UclPhjFBiJv+Xm"
    )
    signed = (
        "credits.example.org/log\n3\nl5fyT+hcTbg23025lt1YLHA7GhX+nheLN3OsJG8PnYg=\n\n"
        "\u2014 credits.example.org/log XjdnH4/WZNt/UiwjI52OXu7Cvy3v9o4szaQokYejmdmDSY3Qyln"
        "Ki2xELRS1Zt7JEyx0VGQImhl3URrWcn0fPONvZQM=\n"
    ).encode()
    assert signer.verifier == verifier
    assert (
        sign_checkpoint(Checkpoint("credits.example.org/log", 3, tree.root()), [signer]) == signed
    )
    opened = open_checkpoint(signed, origin="credits.example.org/log", verifiers=[verifier])
    assert opened.checkpoint.root_hash == tree.root()
