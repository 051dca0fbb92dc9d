"""The public transparency API: proofs that verify, cacheable tiles, balances that
credits-verify replays to over HTTP, and witnesses' co-signatures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from log_world import log_entries, publish_log, published, seeded_program
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from credits.app import create_app
from credits.audit.service import record_events
from credits.settings import Settings, load_settings
from credits.transparency.checkpoint import open_checkpoint
from credits.transparency.integrator import integrate_all
from credits.transparency.merkle import leaf_hash, verify_consistency, verify_inclusion
from credits.transparency.note import Signer, generate_signer, parse_note, parse_verifier_key
from credits.transparency.service import latest_checkpoint_row
from credits.transparency.verify_cli import main
from credits.transparency.witness import Cosigner, generate_cosigner
from credits.transparency.witness_cli import witness


@dataclass
class Log:
    app: Flask
    client: FlaskClient
    settings: Settings
    signer: Signer
    witness: Cosigner


@pytest.fixture
def log(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> Log:
    signer = generate_signer("credits.example.org/log")
    witness = generate_cosigner("witness.example.org/w1")
    monkeypatch.setenv("CREDITS_TRANSPARENCY_ORIGIN", signer.name)
    monkeypatch.setenv("CREDITS_TRANSPARENCY_SIGNER_KEY", signer.key_string())
    monkeypatch.setenv("CREDITS_TRANSPARENCY_WITNESS_KEYS", witness.verifier.key_string())
    settings = load_settings()
    app = create_app(settings, session_factory=joined_session_factory)
    seeded_program(session)
    publish_log(session, settings, signer)
    return Log(app, app.test_client(), settings, signer, witness)


def _root(log: Log) -> tuple[int, bytes]:
    response = log.client.get("/api/v1/transparency/checkpoint")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    opened = open_checkpoint(response.data, origin=log.signer.name, verifiers=[log.signer.verifier])
    return opened.checkpoint.size, opened.checkpoint.root_hash


def test_the_checkpoint_verifies_with_the_published_key(log: Log) -> None:
    keys = log.client.get("/api/v1/transparency/key").get_json()
    assert keys == {"origin": log.signer.name, "keys": [log.signer.verifier.key_string()]}
    parse_verifier_key(keys["keys"][0])
    size, _ = _root(log)
    assert size > 0


def test_every_inclusion_and_consistency_proof_verifies(log: Log, session: Session) -> None:
    size, root = _root(log)
    entries = log_entries(session)
    for index in range(size):
        proof = log.client.get(f"/api/v1/transparency/proof/inclusion?index={index}").get_json()
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        assert proof["leaf_hash"] == leaf_hash(entries[index]).hex()
        assert verify_inclusion(leaf_hash(entries[index]), index, size, hashes, root)
    for old in range(size + 1):
        body = log.client.get(f"/api/v1/transparency/proof/consistency?from={old}").get_json()
        hashes = [bytes.fromhex(h) for h in body["proof"]]
        assert body["to"] == size and body["root2"] == root.hex()
        assert verify_consistency(old, size, hashes, bytes.fromhex(body["root1"]), root)


def test_proofs_at_an_older_size_and_past_the_checkpoint(log: Log, session: Session) -> None:
    size, _ = _root(log)
    record_events(session, [_event(0)])
    publish_log(session, log.settings, log.signer)
    body = log.client.get(f"/api/v1/transparency/proof/inclusion?index=1&size={size}").get_json()
    assert body["size"] == size
    late = log.client.get(f"/api/v1/transparency/proof/inclusion?index=1&size={size + 5}")
    assert late.status_code == 422 and late.mimetype == "application/problem+json"


def test_entries_are_the_audit_rows_in_log_order(log: Log, session: Session) -> None:
    body = log.client.get("/api/v1/transparency/entries?start=2&end=5").get_json()
    entries = log_entries(session)
    assert [e["index"] for e in body["entries"]] == [2, 3, 4]
    assert [e["entry"].encode() for e in body["entries"]] == entries[2:5]
    bad = log.client.get("/api/v1/transparency/entries?start=5&end=2")
    assert bad.status_code == 422


def _event(n: int) -> dict[str, object]:
    return {
        "event_type": "test.filler",
        "actor": "system:tests",
        "subject_type": "test",
        "subject_id": str(n),
        "data": {"n": n},
    }


def test_full_tiles_are_immutable_and_partial_ones_short_lived(log: Log, session: Session) -> None:
    record_events(session, [_event(n) for n in range(300)])
    publish_log(session, log.settings, log.signer)
    full = log.client.get("/api/v1/transparency/tile/0/000")
    assert full.status_code == 200 and len(full.data) == 256 * 32
    assert full.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    bundle = log.client.get("/api/v1/transparency/tile/entries/000")
    assert bundle.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    size, _ = _root(log)
    partial = log.client.get(f"/api/v1/transparency/tile/0/001.p/{size - 256}")
    assert partial.status_code == 200
    assert partial.headers["Cache-Control"] == "public, max-age=60"
    assert log.client.get("/api/v1/transparency/checkpoint").headers["Cache-Control"] == "no-cache"
    for missing in ("tile/0/999", "tile/../secret", "tile/0/000.p/0"):
        response = log.client.get(f"/api/v1/transparency/{missing}")
        assert response.status_code == 404


def test_balances_are_the_ledgers_at_a_size_and_by_scope(log: Log, session: Session) -> None:
    size, _ = _root(log)
    body = log.client.get("/api/v1/transparency/balances").get_json()
    assert body == published(session, size)
    program_id = next(a["program_id"] for a in body["accounts"] if a["program_id"])
    scoped = log.client.get(f"/api/v1/transparency/balances?program_id={program_id}").get_json()
    assert scoped["accounts"] and all(a["program_id"] == program_id for a in scoped["accounts"])
    empty = log.client.get("/api/v1/transparency/balances?size=0").get_json()
    assert all(a["credits_posted"] == 0 for a in empty["accounts"])
    both = log.client.get("/api/v1/transparency/balances?program_id=1&project_id=1")
    assert both.status_code == 422


@pytest.fixture
def served(log: Log) -> Iterator[str]:
    """The app on a real port, one request at a time (the test's connection is shared)."""
    server = make_server("127.0.0.1", 0, log.app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_credits_verify_replays_the_log_over_http_and_offline(
    log: Log, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = log.signer.verifier.key_string()
    assert main([served, "--key", key, "--index", "0"]) == 0
    out = capsys.readouterr().out
    assert "entry 0 is in the log" in out and "published balances (all) match" in out
    assert main(["download", served, str(tmp_path / "mirror")]) == 0
    assert main([str(tmp_path / "mirror"), "--key", key]) == 0
    assert "published balances (all) match" in capsys.readouterr().out


def _witness(log: Log, served: str, tmp_path: Path) -> Result:
    key_file = tmp_path / "witness.key"
    if not key_file.exists():
        key_file.write_text(log.witness.key_string())
    arguments = ["--log", served, "--key", log.signer.verifier.key_string()]
    arguments += ["--state", str(tmp_path / "state"), "--signer-key", str(key_file), "--once"]
    return CliRunner().invoke(witness, arguments)


def test_a_witness_co_signs_and_the_log_shows_it(
    log: Log, served: str, tmp_path: Path, session: Session
) -> None:
    result = _witness(log, served, tmp_path)
    assert result.exit_code == 0, result.output
    size, _ = _root(log)
    assert f"co-signed size {size} (first)" in result.output
    shown = log.client.get("/api/v1/transparency/witnesses").get_json()
    assert [(w["witness"], w["last_size"]) for w in shown["witnesses"]] == [
        (log.witness.name, size)
    ]
    note = log.client.get("/api/v1/transparency/checkpoint").data
    [line] = [s for s in parse_note(note).signatures if s.name == log.witness.name]
    assert log.witness.verifier.timestamp_of(parse_note(note).text, line) is not None
    record_events(session, [_event(1)])
    publish_log(session, log.settings, log.signer)
    again = _witness(log, served, tmp_path)
    assert again.exit_code == 0 and f"(from {size})" in again.output


def test_a_rolled_back_database_is_caught_by_the_witness(
    log: Log, served: str, tmp_path: Path, session: Session
) -> None:
    old_size, old_root = _root(log)
    record_events(session, [_event(n) for n in range(3)])
    publish_log(session, log.settings, log.signer)
    new_size, new_root = _root(log)
    assert _witness(log, served, tmp_path).exit_code == 0
    # The database comes back from a backup taken before the last checkpoint.
    newest = latest_checkpoint_row(session)
    assert newest is not None and newest.size == new_size
    session.delete(newest)
    session.flush()
    result = _witness(log, served, tmp_path)
    assert result.exit_code == 1
    assert f"ROLLBACK: the log is at size {old_size} (root {old_root.hex()})" in result.output
    assert f"size {new_size} seen before (root {new_root.hex()})" in result.output


def test_a_cosignature_from_an_unknown_witness_or_for_an_unpublished_checkpoint_is_refused(
    log: Log,
) -> None:
    note = log.client.get("/api/v1/transparency/checkpoint").data
    text = parse_note(note).text
    stranger = generate_cosigner("stranger.example/w")
    body = {
        "checkpoint": note.decode(),
        "signature": stranger.cosign(text, 1).line().rstrip("\n"),
        "key": stranger.verifier.key_string(),
    }
    refused = log.client.post("/api/v1/transparency/witnesses/cosign", json=body)
    assert refused.status_code == 403
    forged = text.replace(text.splitlines()[1], "999999")
    body = {
        "checkpoint": forged + "\n— x AAAAAAA=\n",
        "signature": log.witness.cosign(forged, 1).line().rstrip("\n"),
        "key": log.witness.verifier.key_string(),
    }
    assert log.client.post("/api/v1/transparency/witnesses/cosign", json=body).status_code == 422
    body = {
        "checkpoint": note.decode(),
        "signature": log.witness.cosign(text + "x\n", 1).line().rstrip("\n"),
        "key": log.witness.verifier.key_string(),
    }
    assert log.client.post("/api/v1/transparency/witnesses/cosign", json=body).status_code == 422


def test_the_integrators_log_verifies_end_to_end(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The platform's own integrator writes the log; credits-verify replays it over
    HTTP to the published balances."""
    signer = generate_signer("credits.example.org/log")
    monkeypatch.setenv("CREDITS_TRANSPARENCY_ORIGIN", signer.name)
    monkeypatch.setenv("CREDITS_TRANSPARENCY_SIGNER_KEY", signer.key_string())
    settings = load_settings()
    app = create_app(settings, session_factory=joined_session_factory)
    seeded_program(session)
    session.flush()
    integrate_all(joined_session_factory, settings)
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert main([url, "--key", signer.verifier.key_string(), "--index", "3"]) == 0
    finally:
        server.shutdown()
        thread.join()
    out = capsys.readouterr().out
    assert f"size {len(log_entries(session))}" in out
    assert "published balances (all) match" in out


def test_the_metrics_give_the_tree_size_and_the_rows_waiting(log: Log, session: Session) -> None:
    size, _ = _root(log)
    record_events(session, [_event(1), _event(2)])
    session.flush()
    response = log.client.get("/api/v1/transparency/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    figures = {
        line.split()[0]: float(line.split()[1])
        for line in response.get_data(as_text=True).splitlines()
        if line and not line.startswith("#")
    }
    assert figures["credits_transparency_tree_size"] == size
    assert figures["credits_transparency_unintegrated_rows"] == 2
    assert figures["credits_transparency_oldest_unintegrated_age_seconds"] >= 0
