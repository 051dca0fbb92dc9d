"""credits-verify over a downloaded folder: a seeded program replays to the
published balances, and each kind of tampering fails naming what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from log_world import (
    ORIGIN,
    log_entries,
    publish_log,
    published,
    seeded_log,
    seeded_program,
    write_log,
)
from sqlalchemy.orm import Session

from credits.ledger.models import Account
from credits.settings import load_settings
from credits.transparency.balances import published_balances
from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.merkle import MemoryTree, leaf_hash
from credits.transparency.note import Signer, generate_signer
from credits.transparency.tiles import encode_bundle
from credits.transparency.verifier import check_balances
from credits.transparency.verify_cli import main, tile_paths


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def key(signer: Signer) -> str:
    return signer.verifier.key_string()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "log"


def test_a_seeded_program_replays_to_the_exact_published_balances(
    any_session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(any_session, folder)
    kinds = {json.loads(e)["type"] for e in entries}
    assert {"ledger.grant", "ledger.hold", "ledger.capture", "ledger.void"} <= kinds
    assert {"ledger.expire", "ledger.adjust"} <= kinds
    code, out, err = run(capsys, str(folder), "--key", key(signer))
    assert (code, err) == (0, "")
    assert f"size {len(entries)}" in out
    ledger_count = sum(1 for e in entries if json.loads(e)["subject"]["type"] == "ledger_transfer")
    assert f"replayed {ledger_count} ledger entries" in out


def test_published_balances_are_the_ledgers_own_counters(any_session: Session) -> None:
    seeded_program(any_session)
    balances = published(any_session, len(log_entries(any_session)))
    counters = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    for row in balances["accounts"]:
        account = any_session.get(Account, row["account_id"])
        assert account is not None
        assert [row[c] for c in counters] == [getattr(account, c) for c in counters]


def test_a_program_and_a_project_are_compared_on_their_own(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, _ = seeded_log(session, folder)
    document = json.loads((folder / "balances.json").read_text())
    program_id = next(r["program_id"] for r in document["accounts"] if r["program_id"])
    project_id = next(r["project_id"] for r in document["accounts"] if r["project_id"])
    code, out, _ = run(capsys, str(folder), "--key", key(signer), "--program", str(program_id))
    assert code == 0 and f"(program {program_id}) match" in out
    code, out, _ = run(capsys, str(folder), "--key", key(signer), "--project", str(project_id))
    assert code == 0 and f"(project {project_id}) match" in out


def _ledger_index(entries: list[bytes], kind: str) -> int:
    return next(i for i, e in enumerate(entries) if json.loads(e)["type"] == f"ledger.{kind}")


def _forge_amount(entry: bytes, amount: int) -> bytes:
    document = json.loads(entry)
    document["data"]["amount"] = amount
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_a_forged_entry_in_a_consistently_rebuilt_log_shows_as_the_account_that_differs(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log's operator rewrites a capture's amount and re-signs: every tile and
    the signature verify, but the ledger's journal says otherwise."""
    signer, entries = seeded_log(session, folder)
    at = _ledger_index(entries, "capture")
    entries[at] = _forge_amount(entries[at], 1)
    balances = json.loads((folder / "balances.json").read_text())
    shutil.rmtree(folder)
    write_log(folder, entries, signer, balances=balances)
    code, _, err = run(capsys, str(folder), "--key", key(signer))
    assert code == 1
    debit = json.loads(entries[at])["data"]["debit_account_id"]
    assert f"account {debit}: debits_posted published" in err
    assert "the log gives" in err


def test_a_forged_entry_in_a_bundle_is_named(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(session, folder)
    at = _ledger_index(entries, "grant")
    forged = list(entries)
    forged[at] = _forge_amount(entries[at], 999)
    _rewrite_bundles(folder, forged, len(entries))
    code, _, err = run(capsys, str(folder), "--key", key(signer))
    assert code == 1
    assert f"FAILED: entry {at} is forged or altered" in err


def test_a_missing_entry_is_named(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(session, folder)
    at = _ledger_index(entries, "void")
    _rewrite_bundles(folder, entries[:at] + entries[at + 1 :], len(entries))
    code, _, err = run(capsys, str(folder), "--key", key(signer))
    assert code == 1
    assert f"FAILED: entry {at} is missing from the log" in err


def test_a_log_without_a_hold_a_capture_settles_names_the_capture(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dropped and re-signed: the tree is sound, the ledger story is not."""
    signer, entries = seeded_log(session, folder)
    hold = _ledger_index(entries, "hold")
    kept = entries[:hold] + entries[hold + 1 :]
    shutil.rmtree(folder)
    write_log(folder, kept, signer, balances=published(session, len(kept)))
    code, _, err = run(capsys, str(folder), "--key", key(signer))
    assert code == 1
    assert f"FAILED: entry {hold} (capture transfer" in err and "no hold before it" in err


def _rewrite_bundles(folder: Path, entries: list[bytes], size: int) -> None:
    """Entry bundles at ``size`` rewritten from ``entries``, tiles left alone."""
    for path in tile_paths(size):
        if path.startswith("tile/entries/"):
            (folder / path).unlink()
    bundle = folder / tile_paths(size)[0]
    bundle.parent.mkdir(parents=True, exist_ok=True)
    assert size <= 256  # one bundle holds the seeded log
    bundle.write_bytes(encode_bundle(entries))


@pytest.mark.parametrize("what", ["entry", "tile", "checkpoint", "signature"])
def test_any_flipped_byte_fails(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    signer, entries = seeded_log(session, folder)
    paths = tile_paths(len(entries))
    target, offset = {
        "entry": (folder / paths[0], 40),
        "tile": (folder / paths[1], 5),
        "checkpoint": (folder / "checkpoint", len(ORIGIN) + 5),
        "signature": (folder / "checkpoint", -10),
    }[what]
    data = bytearray(target.read_bytes())
    data[offset] ^= 0x01
    target.write_bytes(bytes(data))
    code, _, err = run(capsys, str(folder), "--key", key(signer))
    assert code == 1 and err.startswith("FAILED: ")


def test_an_inclusion_proof_and_consistency_from_an_older_checkpoint(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(session, tmp_path / "new")
    old = tmp_path / "old-checkpoint"
    old.write_bytes(_checkpoint(entries[:5], signer))
    code, out, err = run(
        capsys,
        str(tmp_path / "new"),
        "--key",
        key(signer),
        "--since",
        str(old),
        "--index",
        "3",
        "--no-replay",
    )
    assert (code, err) == (0, "")
    assert "consistent with" in out and "entry 3 is in the log" in out


def test_a_rollback_or_a_split_view_against_an_older_checkpoint_is_refused(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(session, tmp_path / "log")
    bigger = tmp_path / "bigger"
    bigger.write_bytes(_checkpoint([*entries, b"{}"], signer))
    code, _, err = run(capsys, str(tmp_path / "log"), "--key", key(signer), "--since", str(bigger))
    assert code == 1 and "ROLLBACK" in err
    other = tmp_path / "other"
    other.write_bytes(_checkpoint([*entries[:-1], b"{}"], signer))
    code, _, err = run(capsys, str(tmp_path / "log"), "--key", key(signer), "--since", str(other))
    assert code == 1 and "SPLIT VIEW" in err


def test_another_key_or_no_balances_is_an_error(
    session: Session, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded_log(session, folder)
    code, _, err = run(capsys, str(folder), "--key", key(generate_signer(ORIGIN)))
    assert code == 1 and "no signature by a known key" in err
    code, _, err = run(capsys, str(folder / "nowhere"), "--key", key(generate_signer(ORIGIN)))
    assert code == 2 and err.startswith("error: ")


def _checkpoint(entries: list[bytes], signer: Signer) -> bytes:
    tree = MemoryTree()
    for entry in entries:
        tree.append(leaf_hash(entry))
    return sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), [signer])


def test_balances_at_a_log_size_count_the_transfers_among_its_first_entries(
    any_session: Session,
) -> None:
    seeded_program(any_session)
    publish_log(any_session, load_settings(), generate_signer(ORIGIN))
    entries = log_entries(any_session)
    for size in (0, _ledger_index(entries, "capture"), len(entries)):
        document = published_balances(any_session, size=size).model_dump(mode="json")
        assert check_balances(entries[:size], document, complete=True)
    assert published_balances(any_session, size=len(entries)).model_dump(mode="json") == published(
        any_session, len(entries)
    )
