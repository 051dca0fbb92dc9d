"""The witness co-signs only a log that grew consistently, and refuses a
rollback or a split view without signing or forgetting what it saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from credits.cli import main
from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.merkle import MemoryTree, consistency_proof, leaf_hash
from credits.transparency.note import MalformedNote, Signer, generate_signer, parse_note
from credits.transparency.verifier import VerificationFailed
from credits.transparency.witness import (
    Cosigner,
    LogClient,
    generate_cosigner,
    load_state,
    parse_cosigner,
    parse_cosigner_verifier,
    witness_round,
)

ORIGIN = "credits.example.org/log"
NOW = 1_780_000_000


def _response(status: int, content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = content
    return response


class FakeLog:
    """A log of ``entries`` answering the witness's three calls."""

    def __init__(self, signer: Signer, entries: list[bytes]) -> None:
        self.signer = signer
        self.tree = MemoryTree()
        for entry in entries:
            self.tree.append(leaf_hash(entry))
        self.submitted: list[dict[str, Any]] = []

    def note(self) -> bytes:
        checkpoint = Checkpoint(ORIGIN, self.tree.size, self.tree.root())
        return sign_checkpoint(checkpoint, [self.signer])

    def get(self, url: str, params: dict[str, Any]) -> requests.Response:
        if url.endswith("/checkpoint"):
            return _response(200, self.note())
        proof = consistency_proof(self.tree, int(params["from"]), int(params["to"]))
        return _response(200, json.dumps({"proof": [h.hex() for h in proof]}).encode())

    def post(self, url: str, body: dict[str, Any]) -> requests.Response:
        assert url.endswith("/witnesses/cosign")
        self.submitted.append(body)
        return _response(200, b"{}")

    def client(self) -> LogClient:
        return LogClient("https://credits.example.org", get=self.get, post=self.post)


def entries(n: int, tag: str = "") -> list[bytes]:
    return [f'{{"n":{i}{tag}}}'.encode() for i in range(n)]


@pytest.fixture
def signer() -> Signer:
    return generate_signer(ORIGIN)


@pytest.fixture
def cosigner() -> Cosigner:
    return generate_cosigner("witness.example.org/w1")


def run(log: FakeLog, state: Path, cosigner: Cosigner, signer: Signer) -> Any:
    return witness_round(log.client(), [signer.verifier], state, cosigner, now=lambda: NOW)


def test_the_first_round_co_signs_with_a_verifying_cosignature(
    tmp_path: Path, signer: Signer, cosigner: Cosigner
) -> None:
    log = FakeLog(signer, entries(5))
    done = run(log, tmp_path / "state", cosigner, signer)
    assert done.previous_size is None and done.checkpoint.size == 5
    [body] = log.submitted
    verifier = parse_cosigner_verifier(body["key"])
    note_text = parse_note(log.note()).text
    cosigned = parse_note(f"{note_text}\n{body['signature']}\n".encode()).signatures[0]
    assert verifier.timestamp_of(note_text, cosigned) == NOW
    assert verifier.timestamp_of(note_text.replace("5", "6", 1), cosigned) is None
    assert load_state(tmp_path / "state") == done.checkpoint


def test_a_log_that_grew_consistently_is_co_signed_again(
    tmp_path: Path, signer: Signer, cosigner: Cosigner
) -> None:
    run(FakeLog(signer, entries(5)), tmp_path / "state", cosigner, signer)
    done = run(FakeLog(signer, entries(9)), tmp_path / "state", cosigner, signer)
    assert (done.previous_size, done.checkpoint.size) == (5, 9)


@pytest.mark.parametrize(
    ("later", "message"),
    [
        (entries(5), "ROLLBACK: the log is at size 5"),
        (entries(8, tag=',"x":1'), "SPLIT VIEW: two roots at size 8"),
        ([*entries(3), *entries(6, tag=',"x":1')[3:], *entries(9)[6:]], "SPLIT VIEW"),
    ],
    ids=["rollback", "same-size", "forked-history"],
)
def test_a_rollback_or_split_view_is_refused_and_nothing_signed(
    tmp_path: Path, signer: Signer, cosigner: Cosigner, later: list[bytes], message: str
) -> None:
    state = tmp_path / "state"
    first = run(FakeLog(signer, entries(8)), state, cosigner, signer).checkpoint
    log = FakeLog(signer, later)
    with pytest.raises(VerificationFailed, match=message) as refused:
        run(log, state, cosigner, signer)
    assert first.root_hash.hex() in str(refused.value)
    assert log.tree.root().hex() in str(refused.value)
    assert log.submitted == [] and load_state(state) == first


def test_another_keys_checkpoint_is_refused(
    tmp_path: Path, signer: Signer, cosigner: Cosigner
) -> None:
    log = FakeLog(generate_signer(ORIGIN), entries(3))
    with pytest.raises(VerificationFailed, match="no signature by a known key"):
        run(log, tmp_path / "state", cosigner, signer)
    assert not (tmp_path / "state").exists()


def test_witness_keys_round_trip_and_bad_ones_are_refused(cosigner: Cosigner) -> None:
    assert parse_cosigner(cosigner.key_string()) == cosigner
    verifier = parse_cosigner_verifier(cosigner.verifier.key_string())
    assert verifier == cosigner.verifier
    log_key = generate_signer(ORIGIN).verifier.key_string()
    with pytest.raises(MalformedNote, match="type 0x04"):
        parse_cosigner_verifier(log_key)


def test_the_witness_commands_are_under_credits_transparency(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        main, ["transparency", "witness-key", "--name", "w.example/1", "--out", str(tmp_path / "k")]
    )
    assert made.exit_code == 0, made.output
    assert parse_cosigner((tmp_path / "k").read_text()).verifier.key_string() in made.output
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    again = runner.invoke(
        main, ["transparency", "witness-key", "--name", "w.example/1", "--out", str(tmp_path / "k")]
    )
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(
        main,
        [
            "transparency",
            "witness",
            "--log",
            "http://127.0.0.1:9",
            "--key",
            "nonsense",
            "--state",
            str(tmp_path / "s"),
            "--signer-key",
            str(tmp_path / "k"),
            "--once",
        ],
    )
    assert bad.exit_code == 1 and bad.output.startswith("error: --key")
