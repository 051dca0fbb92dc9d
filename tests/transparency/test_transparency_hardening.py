"""Defects of the public log found in review: an event too large for one entry, a
witness's extra lines, unsigned tiles served as immutable, idempotency keys in
the log, and tracebacks in credits-verify and the witness on bad input."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from grants_helpers import joined_app
from log_world import ORIGIN, SYSTEM, publish_log, seeded_log, seeded_program, write_log
from proposal_helpers import CREDIT, World, awarded, full_state, reviewed, world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from test_transparency_api import Log
from werkzeug.serving import make_server

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.app import create_app
from credits.audit.models import AuditEvent
from credits.audit.public_text import EMAIL_LIKE, TEXT_MAX_BYTES, PublicTextTooLong, json_size
from credits.audit.service import canonical_json, record_events
from credits.db import utcnow
from credits.grants.funding import fund_program
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.ledger.holds import place_hold
from credits.ledger.models import Transfer
from credits.ledger.settle import capture, void_hold
from credits.settings import load_settings
from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.entries import published_entry
from credits.transparency.integrator import integrate
from credits.transparency.log_check import check_log
from credits.transparency.merkle import MemoryTree, leaf_hash
from credits.transparency.note import generate_signer, parse_note
from credits.transparency.replay import ReplayError, replay
from credits.transparency.service import tile_store
from credits.transparency.stores import MemoryTileStore
from credits.transparency.tiles import MAX_ENTRY_SIZE, read_entries
from credits.transparency.verify_cli import main
from credits.transparency.witness import (
    LogClient,
    WitnessError,
    generate_cosigner,
    load_state,
    save_state,
    witness_round,
)

API = "/api/v1/transparency"
Headers = dict[str, str]
# Two bytes each in UTF-8: 20,000 of them are 40,000 bytes; four bytes each: 80,000.
TWO_BYTES, FOUR_BYTES = "é", "\U0001d538"  # é and MATHEMATICAL DOUBLE-STRUCK A


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.get_json()
    assert body["type"].endswith(slug)
    return body


def _rows(session: Session, model: Any = AuditEvent) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _integrates(session: Session) -> None:
    """The integrator publishes every row there is, as the periodic run would."""
    signer = generate_signer(ORIGIN)
    result = integrate(session, store=MemoryTileStore(), signer=signer, origin=ORIGIN)
    assert result.signed and result.size == _rows(session)


@pytest.fixture
def api_log(
    session: Session, joined_session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> Log:
    """The API over a seeded, published log with one configured witness (as in
    test_transparency_api)."""
    signer = generate_signer(ORIGIN)
    witness = generate_cosigner("witness.example.org/w1")
    monkeypatch.setenv("CREDITS_TRANSPARENCY_ORIGIN", signer.name)
    monkeypatch.setenv("CREDITS_TRANSPARENCY_SIGNER_KEY", signer.key_string())
    monkeypatch.setenv("CREDITS_TRANSPARENCY_WITNESS_KEYS", witness.verifier.key_string())
    settings = load_settings()
    app = create_app(settings, session_factory=joined_session_factory)
    seeded_program(session)
    publish_log(session, settings, signer)
    return Log(app, app.test_client(), settings, signer, witness)


@pytest.fixture
def api_url(api_log: Log) -> Iterator[str]:
    """The app on a real port, for credits-verify."""
    server = make_server("127.0.0.1", 0, api_log.app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def _filler(n: int) -> dict[str, object]:
    return {
        "event_type": "test.filler",
        "actor": "system:tests",
        "subject_type": "test",
        "subject_id": str(n),
        "data": {"n": n},
    }


# 1. An event too large for one entry is refused before anything is written.


def _headers(session: Session, actor: Actor) -> Headers:
    assert actor.email is not None
    created = create_token(session, email=actor.email, actor=actor, scopes=())
    session.flush()
    return {"Authorization": f"Bearer {created.secret}"}


@pytest.fixture
def client(joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(joined_session_factory).test_client()


@pytest.fixture
def w(session: Session) -> World:
    return world(session)


def test_a_rejection_whose_reasons_overflow_an_entry_is_422_and_changes_nothing(
    session: Session, client: FlaskClient, w: World
) -> None:
    proposal = reviewed(session, w)
    fay = _headers(session, w.fay)
    before = full_state(session) | {"events": _rows(session)}
    body = {"reason": TWO_BYTES * 20_000, "override_reason": "ü" * 20_000}
    refused = client.post(f"/api/v1/proposals/{proposal.id}/reject", json=body, headers=fay)
    problem = _problem(refused, 422, "public-text-too-long")
    assert problem["field"] in {"reason", "override_reason"}
    assert "65,535" in problem["detail"]
    assert full_state(session) | {"events": _rows(session)} == before
    _integrates(session)


def test_an_award_with_a_four_byte_reason_is_422_and_changes_nothing(
    session: Session, client: FlaskClient, w: World
) -> None:
    proposal = reviewed(session, w)
    fay = _headers(session, w.fay) | {"Idempotency-Key": "award-1"}
    before = full_state(session) | {"events": _rows(session), "transfers": _rows(session, Transfer)}
    body = {
        "amounts": {"gpu": 50 * CREDIT},
        "starts_at": utcnow().isoformat(),
        "ends_at": proposal.ends_at.isoformat(),
        "reason": FOUR_BYTES * 20_000,
    }
    refused = client.post(f"/api/v1/proposals/{proposal.id}/award", json=body, headers=fay)
    assert _problem(refused, 422, "public-text-too-long")["field"] == "reason"
    after = full_state(session) | {"events": _rows(session), "transfers": _rows(session, Transfer)}
    assert after == before
    _integrates(session)


def test_record_events_refuses_a_batch_with_an_event_over_an_entry(session: Session) -> None:
    before = _rows(session)
    event = {"event_type": "t.big", "actor": "system:t", "subject_type": "t", "subject_id": "1"}
    fits = event | {"data": {"a": "x" * 30_000, "b": "y" * 30_000}}
    too_big = event | {"data": {"a": "x" * 40_000, "b": "y" * 30_000}}
    with pytest.raises(PublicTextTooLong) as refused:
        record_events(session, [fits, too_big])
    assert refused.value.extra == {"field": "a"}
    assert "a and b would take 70," in str(refused.value)
    assert _rows(session) == before  # not even the batch's first event
    record_events(session, [fits])
    _integrates(session)


def test_a_reason_too_long_is_refused_before_the_ledger_on_either_path(
    any_session: Session,
) -> None:
    w = world(any_session)
    before = (_rows(any_session), _rows(any_session, Transfer))
    with pytest.raises(PublicTextTooLong):
        fund_program(
            any_session,
            program_id=w.program_id,
            currency="gpu",
            amount_micro=5,
            key="top-up",
            actor=w.fay,
            reason=FOUR_BYTES * 15_001,
        )
    assert (_rows(any_session), _rows(any_session, Transfer)) == before


def test_the_largest_ledger_event_a_reason_allows_fits_one_entry() -> None:
    # What the PostgreSQL functions write (migration 0017), every text field as long
    # as its column allows and each character escaped to six bytes.
    widest = "\x01" * 200
    reason = "abcd" + "\x01" * 9_999
    assert json_size(reason) == TEXT_MAX_BYTES
    big = 2**63 - 1
    data = {
        "amount": big,
        "credit_account_id": big,
        "currency": "label",
        "debit_account_id": big,
        "id": big,
        "idempotency_key": widest,
        "kind": "capture",
        "part": 2**31 - 1,
        "pending": True,
        "pending_id": big,
        "reason": reason,
        "reference": widest,
    }
    document = {
        "actor": widest,
        "at": "2026-12-06T13:07:33.205881+00:00",
        "data": data,
        "subject": {"id": str(big), "type": "ledger_transfer"},
        "type": "ledger.capture",
    }
    assert len(canonical_json(document).encode()) <= MAX_ENTRY_SIZE


# 2. A witness's co-signature is one line, over the checkpoint this log signed.


def _cosign(api_log: Log, checkpoint: str, signature: str) -> Any:
    body = {
        "checkpoint": checkpoint,
        "signature": signature,
        "key": api_log.witness.verifier.key_string(),
    }
    return api_log.client.post(f"{API}/witnesses/cosign", json=body)


def _served_unchanged(api_log: Log, api_url: str, note: bytes) -> None:
    assert api_log.client.get(f"{API}/checkpoint").data == note
    assert main([api_url, "--key", api_log.signer.verifier.key_string(), "--no-replay"]) == 0


def test_a_cosignature_carrying_more_lines_is_refused(api_log: Log, api_url: str) -> None:
    note = api_log.client.get(f"{API}/checkpoint").data
    good = api_log.witness.cosign(parse_note(note).text, 1).line().rstrip("\n")
    junk = base64.b64encode(api_log.signer.verifier.key_id + bytes(64)).decode()
    refused = _cosign(api_log, note.decode(), f"{good}\n— {api_log.signer.name} {junk}")
    assert "one signature line" in _problem(refused, 422, "invalid-input")["detail"]
    _served_unchanged(api_log, api_url, note)


def test_a_cosignature_over_another_origin_is_refused(api_log: Log, api_url: str) -> None:
    note = api_log.client.get(f"{API}/checkpoint").data
    lines = parse_note(note).text.splitlines()
    other = Checkpoint("evil.example/log", int(lines[1]), base64.b64decode(lines[2]), ("ext",))
    refused = _cosign(
        api_log, other.text() + "\n— x AAAAAAA=\n", api_log.witness.cosign(other.text(), 1).line()
    )
    _problem(refused, 422, "invalid-input")
    _served_unchanged(api_log, api_url, note)


def test_a_good_cosignature_is_stored_as_one_re_encoded_line(api_log: Log, api_url: str) -> None:
    note = api_log.client.get(f"{API}/checkpoint").data
    text = parse_note(note).text
    line = api_log.witness.cosign(text, 1).line().rstrip("\n")
    accepted = _cosign(api_log, note.decode(), f"  {line}\n")
    assert accepted.status_code == 200 and accepted.get_json()["stored"] is True
    served_note = api_log.client.get(f"{API}/checkpoint").data
    assert served_note == note + f"{line}\n".encode()
    (signature,) = [s for s in parse_note(served_note).signatures if s.name == api_log.witness.name]
    assert api_log.witness.verifier.timestamp_of(text, signature) == 1
    assert main([api_url, "--key", api_log.signer.verifier.key_string(), "--no-replay"]) == 0


# 3. Tiles past the latest checkpoint were never signed: not served.


class Boom(Exception):
    pass


def test_tiles_past_the_latest_checkpoint_are_404_until_signed(
    api_log: Log, session: Session
) -> None:
    record_events(session, [_filler(n) for n in range(300)])
    store = tile_store(api_log.settings)
    size = int(api_log.client.get(f"{API}/checkpoint").data.splitlines()[1])
    assert size < 256
    with pytest.raises(Boom), session.begin_nested():
        integrate(session, store=store, signer=api_log.signer, origin=api_log.signer.name)
        raise Boom  # the run's tiles are written; its checkpoint is rolled back
    for path in ("tile/0/000", "tile/entries/000", "tile/0/001.p/44", "tile/1/000.p/1"):
        response = api_log.client.get(f"{API}/{path}")
        assert "past the latest checkpoint" in _problem(response, 404, "not-found")["detail"]
        assert "immutable" not in response.headers.get("Cache-Control", "")
    within = api_log.client.get(f"{API}/tile/0/000.p/{size}")
    assert within.status_code == 200 and within.headers["Cache-Control"] == "public, max-age=60"

    integrate(session, store=store, signer=api_log.signer, origin=api_log.signer.name)
    full = api_log.client.get(f"{API}/tile/0/000")
    assert full.status_code == 200
    assert full.headers["Cache-Control"] == "public, max-age=31536000, immutable"


# 4. A client's idempotency key is never published.

EMAIL_KEYS = ("fay.smith@funder.example-2026-q1", "ops+hold@uni.example")


def _transfers_with_email_keys(session: Session) -> World:
    w = world(session)
    awarded(session, w, amounts={"gpu": 100 * CREDIT})
    fund_program(
        session,
        program_id=w.program_id,
        currency="gpu",
        amount_micro=5 * CREDIT,
        key=EMAIL_KEYS[0],
        actor=w.fay,
        reason="FY27 top-up",
    )
    hold = EMAIL_KEYS[1]
    place_hold(
        session, key=hold, amount=3 * CREDIT, currency="gpu", actor=SYSTEM, project_id=w.project_id
    )
    capture(session, key=f"{hold}-c", hold_key=hold, amount=CREDIT, actor=SYSTEM)
    void_hold(session, key=f"{hold}-v", hold_key=hold, actor=SYSTEM)
    session.flush()
    return w


def _entries(session: Session) -> list[bytes]:
    rows = session.scalars(select(AuditEvent.canonical_json).order_by(AuditEvent.id))
    return [published_entry(row) for row in rows]


def test_no_idempotency_key_is_published_on_either_ledger_path(any_session: Session) -> None:
    _transfers_with_email_keys(any_session)
    rows = any_session.scalars(select(AuditEvent.canonical_json)).all()
    assert any(EMAIL_KEYS[0] in row for row in rows)  # the audit row keeps it
    entries = _entries(any_session)
    ledger = [json.loads(e) for e in entries if b'"ledger_transfer"' in e]
    assert len(ledger) >= 4
    assert all("idempotency_key" not in e["data"] and "amount" in e["data"] for e in ledger)
    assert not [e for e in entries if EMAIL_LIKE.search(e.decode())]


def test_the_integrated_log_holds_no_key_and_still_verifies_and_replays(session: Session) -> None:
    _transfers_with_email_keys(session)
    signer, store = generate_signer(ORIGIN), MemoryTileStore()
    size = integrate(session, store=store, signer=signer, origin=ORIGIN).size
    published = read_entries(store, size, 0, size)
    assert published == _entries(session)
    assert not [e for e in published if EMAIL_LIKE.search(e.decode()) or b"idempotency" in e]
    settings = load_settings(
        transparency_signer_key=signer.key_string(), transparency_origin=ORIGIN
    )
    assert check_log(session, settings, store).ok
    assert replay(published).ledger_entries >= 4


def test_a_log_whose_first_entries_were_published_with_their_keys_still_checks(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log integrated before keys were left out of entries holds them (it is
    append-only); ``credits transparency verify`` accepts those entries as written."""
    w = _transfers_with_email_keys(session)
    signer, store = generate_signer(ORIGIN), MemoryTileStore()
    with monkeypatch.context() as before_the_change:
        before_the_change.setattr(
            "credits.transparency.integrator.published_entry", lambda row: row.encode()
        )
        first = integrate(session, store=store, signer=signer, origin=ORIGIN).size
    assert any(b"idempotency_key" in entry for entry in read_entries(store, first, 0, first))
    fund_program(
        session,
        program_id=w.program_id,
        currency="gpu",
        amount_micro=CREDIT,
        key=f"later:{EMAIL_KEYS[0]}",
        actor=w.fay,
        reason="FY27 second top-up",
    )
    session.flush()
    size = integrate(session, store=store, signer=signer, origin=ORIGIN).size
    assert size > first
    assert not [e for e in read_entries(store, size, first, size) if b"idempotency" in e]
    settings = load_settings(
        transparency_signer_key=signer.key_string(), transparency_origin=ORIGIN
    )

    assert check_log(session, settings, store).ok


def _without_keys(value: Any) -> Any:
    """What published_entry leaves of parsed JSON, written the slow, plain way."""
    if isinstance(value, dict):
        drop = {"idempotency_key", "request_hash"}
        return {k: _without_keys(v) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_without_keys(item) for item in value]
    return value


@pytest.mark.parametrize(
    "document",
    [
        {"type": "x", "data": {"reason": 'said "idempotency_key":"k", then \\'}},
        {"data": {"idempotency_key": "k", "request_hash": "h", "id": 1}},
        {"data": {"a": 1, "idempotency_key": 'e\\"x\u2028\u00e9', "request_hash": "h"}},
        {"data": {'x"idempotency_key': "v", "y": 1}},
        {"data": {"labels": {'x"request_hash': "v"}}},
        {"data": {"idempotency_key": "only"}, "z": [{"request_hash": "h", "b": 2}]},
        {"data": {"idempotency_key": "\\", "zz": '\\"', "request_hash": '"'}},
        {"data": {"a": "ends in \\", "idempotency_key": '\\\\"', "b": [1, "request_hash"]}},
        {"data": {"idempotency_key": None, "n": 1}, "x": {"request_hash": 5}},
    ],
)
def test_published_entry_drops_exactly_those_members(document: dict[str, Any]) -> None:
    expected = canonical_json(_without_keys(document)).encode()
    assert published_entry(canonical_json(document)) == expected


# 5. credits-verify and the witness: one line and a non-zero exit, never a traceback.

ROW = {
    "account_id": 1,
    "code": "a",
    "currency": "gpu",
    "kind": "k",
    "program_id": None,
    "project_id": None,
    "debits_pending": 0,
    "debits_posted": 0,
    "credits_pending": 0,
    "credits_posted": 0,
}


def _folder_with_balances(tmp_path: Path, balances: str) -> tuple[Path, str]:
    signer = generate_signer(ORIGIN)
    entry = canonical_json({"type": "t", "data": {}})
    write_log(tmp_path, [entry.encode()], signer, balances={})
    (tmp_path / "balances.json").write_text(balances)
    return tmp_path, signer.verifier.key_string()


def _fails_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], expected: str, code: int
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_an_account_id_of_1e400_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps({"size": 1, "accounts": [ROW]}).replace(
        '"account_id": 1', '"account_id": 1e400'
    )
    folder, key = _folder_with_balances(tmp_path, text)
    _fails_in_one_line([str(folder), "--key", key], capsys, "FAILED: the published balances", 1)


def test_balances_nested_too_deep_are_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = '{"size": 1, "accounts": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    folder, key = _folder_with_balances(tmp_path, text)
    _fails_in_one_line([str(folder), "--key", key], capsys, "error: balances.json is not JSON", 2)


def test_a_ledger_entry_nested_too_deep_is_not_json() -> None:
    entry = b'{"type":"ledger.grant","x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    with pytest.raises(ReplayError, match="entry 0 is not JSON"):
        replay([entry])


def test_a_tile_that_is_a_folder_is_an_error(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer, entries = seeded_log(session, tmp_path)
    assert len(entries) < 256
    tile = tmp_path / "tile" / "0" / f"000.p/{len(entries)}"
    tile.unlink()
    tile.mkdir()
    argv = [str(tmp_path), "--key", signer.verifier.key_string()]
    _fails_in_one_line(argv, capsys, "error: cannot read", 2)


def test_downloading_into_a_files_child_is_an_error(
    api_log: Log, api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    argv = ["download", api_url, str(tmp_path / "file" / "sub")]
    _fails_in_one_line(argv, capsys, "error: cannot write", 2)


def _response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = status, body
    return response


def test_a_consistency_proof_that_is_not_json_fails_the_round_only(tmp_path: Path) -> None:
    signer = generate_signer("l.example/log")
    tree = MemoryTree()
    for n in range(5):
        tree.append(leaf_hash(b"%d" % n))
    state = tmp_path / "state"
    save_state(state, Checkpoint(signer.name, 3, tree.root(3)))
    note = sign_checkpoint(Checkpoint(signer.name, 5, tree.root()), [signer])

    def get(url: str, params: dict[str, Any]) -> requests.Response:
        return _response(200, note if url.endswith("checkpoint") else b"<html>proxy</html>")

    client = LogClient("http://x", get=get, post=lambda _u, _b: _response(200, b"{}"))
    with pytest.raises(WitnessError, match="not JSON"):
        witness_round(client, [signer.verifier], state, generate_cosigner("w.example/w"))
    assert load_state(state) == Checkpoint(signer.name, 3, tree.root(3))


def test_a_state_file_that_cannot_be_written_fails_the_round_only(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(WitnessError, match="cannot be written"):
        save_state(tmp_path / "file" / "state", Checkpoint("l.example/log", 0, bytes(32)))
