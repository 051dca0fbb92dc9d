"""The integrator: gapless log indexes in id order, tiles, signed checkpoints, a
tree that never shrinks, key rotation, and ``verify`` catching a rewritten row
(issue 15, items 2 to 4).

These run on SQLite in a rolled-back session, whose own rows are committed as
far as the integrator can tell; on PostgreSQL a row is only eligible once its
transaction has ended, which test_transparency_sequencing_pg.py drives with
real commits.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.models import AuditEvent
from credits.audit.service import leaf_hash as hex_leaf_hash
from credits.audit.service import record_event
from credits.cli import main
from credits.embedded import Chores
from credits.settings import Settings, load_settings
from credits.transparency.checkpoint import open_checkpoint
from credits.transparency.integrator import integrate, run_integration
from credits.transparency.log_check import LogCheck, check_log
from credits.transparency.merkle import leaf_hash, root_from_leaf_hashes
from credits.transparency.note import Signer, generate_signer, parse_verifier_key
from credits.transparency.service import (
    KeyExists,
    init_key,
    latest_checkpoint,
    load_signer,
    log_status,
    read_checkpoint_file,
    tile_store,
    verifier_keys,
)
from credits.transparency.stores import MemoryTileStore
from credits.transparency.tiles import append_entries, read_entries, write_files
from credits.worker import INTEGRATE_LOG, make_celery

ORIGIN = "credits.test/log"


def _write(session: Session, count: int, tag: str = "e") -> None:
    for n in range(count):
        record_event(
            session,
            event_type="test.event",
            actor="system:test",
            subject_type="test",
            subject_id=f"{tag}{n}",
            data={"n": n},
        )
    session.flush()


def _indexed(session: Session) -> list[tuple[int, int]]:
    """(id, log_index) of integrated rows, by log index."""
    return [
        (row_id, index)
        for row_id, index in session.execute(
            select(AuditEvent.id, AuditEvent.log_index)
            .where(AuditEvent.log_index.is_not(None))
            .order_by(AuditEvent.log_index)
        )
    ]


def _rewrite_row(session: Session, row_id: int) -> None:
    """What an attacker with the database could do: lift the guard, rewrite a row
    and its leaf hash together (rolled back with the test)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
    else:
        session.execute(text("DROP TRIGGER audit_events_no_update"))
    forged = json.dumps({"forged": True})
    session.execute(
        text("UPDATE audit_events SET canonical_json = :c, leaf_hash = :h WHERE id = :id"),
        {"c": forged, "h": hex_leaf_hash(forged), "id": row_id},
    )


def test_rows_get_gapless_indexes_in_id_order_and_a_signed_checkpoint(
    session: Session,
) -> None:
    signer = generate_signer(ORIGIN)
    store = MemoryTileStore()
    _write(session, 5)

    result = integrate(session, store=store, signer=signer, origin=ORIGIN)

    rows = _indexed(session)
    assert [index for _, index in rows] == list(range(len(rows)))
    assert [row_id for row_id, _ in rows] == sorted(row_id for row_id, _ in rows)
    assert result.size == len(rows) >= 5
    assert result.note is not None
    opened = open_checkpoint(result.note, origin=ORIGIN, verifiers=[signer.verifier])
    entries = [
        canonical.encode()
        for canonical in session.scalars(
            select(AuditEvent.canonical_json).order_by(AuditEvent.log_index)
        )
    ]
    assert opened.checkpoint.size == len(entries)
    assert opened.checkpoint.root_hash == root_from_leaf_hashes([leaf_hash(e) for e in entries])
    assert read_entries(store, len(entries), 0, len(entries)) == entries
    assert latest_checkpoint(session) == result.note


def test_a_second_run_with_nothing_new_signs_nothing(session: Session) -> None:
    signer = generate_signer(ORIGIN)
    store = MemoryTileStore()
    _write(session, 2)
    first = integrate(session, store=store, signer=signer, origin=ORIGIN)

    again = integrate(session, store=store, signer=signer, origin=ORIGIN)

    assert (again.integrated, again.size, again.signed) == (0, first.size, False)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=5))
def test_the_tree_size_never_decreases_and_every_checkpoint_matches_the_rows(
    session: Session, batches: list[int]
) -> None:
    signer = generate_signer(ORIGIN)
    store = MemoryTileStore()
    sizes = []
    with session.begin_nested() as nested:
        for number, count in enumerate(batches):
            _write(session, count, tag=f"b{number}-")
            result = integrate(session, store=store, signer=signer, origin=ORIGIN)
            sizes.append(result.size)
            assert check_log_with(session, store, signer).problem is None
        nested.rollback()
    assert sizes == sorted(sizes)


def check_log_with(session: Session, store: MemoryTileStore, signer: Signer) -> LogCheck:
    settings_ = load_settings(
        transparency_signer_key=signer.key_string(), transparency_origin=ORIGIN
    )
    return check_log(session, settings_, store)


def test_verify_catches_a_row_rewritten_with_its_leaf_hash(session: Session) -> None:
    signer = generate_signer(ORIGIN)
    store = MemoryTileStore()
    _write(session, 3)
    integrate(session, store=store, signer=signer, origin=ORIGIN)
    assert check_log_with(session, store, signer).problem is None
    victim, index = _indexed(session)[-2]

    _rewrite_row(session, victim)

    problem = check_log_with(session, store, signer).problem
    assert problem == (
        f"entry {index} (audit row {victim}): the audit row is not the stored entry bundle's"
    )


def test_verify_catches_a_rewrite_whose_tiles_were_regrown_by_the_root(
    session: Session,
) -> None:
    signer = generate_signer(ORIGIN)
    _write(session, 3)
    integrate(session, store=MemoryTileStore(), signer=signer, origin=ORIGIN)
    victim, _ = _indexed(session)[0]
    _rewrite_row(session, victim)
    # The attacker regrows every tile from the rewritten rows; the signed
    # checkpoint is the one thing they cannot make again.
    forged = MemoryTileStore()
    entries = [
        canonical.encode()
        for canonical in session.scalars(
            select(AuditEvent.canonical_json)
            .where(AuditEvent.log_index.is_not(None))
            .order_by(AuditEvent.log_index)
        )
    ]
    write_files(forged, append_entries(forged, 0, entries))

    problem = check_log_with(session, forged, signer).problem

    assert problem == "the root recomputed from the audit rows is not the checkpoint's"


def test_the_guard_lets_a_log_index_be_set_once_and_nothing_else(any_session: Session) -> None:
    _write(any_session, 1)
    row_id = any_session.scalars(select(AuditEvent.id).order_by(AuditEvent.id.desc())).first()
    free = 10**12
    any_session.execute(
        text("UPDATE audit_events SET log_index = :i WHERE id = :id"), {"i": free, "id": row_id}
    )
    for statement in (
        "UPDATE audit_events SET log_index = log_index + 1 WHERE id = :id",
        "UPDATE audit_events SET log_index = NULL WHERE id = :id",
        "UPDATE audit_events SET canonical_json = '{}' WHERE id = :id",
    ):
        with pytest.raises(IntegrityError, match="append-only"), any_session.begin_nested():
            any_session.execute(text(statement), {"id": row_id})


# Keys.


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        var_dir=tmp_path / "var",
        transparency_origin=ORIGIN,
        **overrides,
    )


def test_init_key_writes_a_0600_key_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    settings_ = _settings(tmp_path)

    signer = init_key(settings_)

    path = settings_.transparency_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signer(settings_).verifier == signer.verifier
    assert signer.name == ORIGIN
    before = path.read_bytes()
    with pytest.raises(KeyExists):
        init_key(settings_)
    assert path.read_bytes() == before


def test_the_cli_makes_the_key_and_refuses_a_second_one(tmp_path: Path) -> None:
    settings_ = _settings(tmp_path)
    runner = CliRunner()

    made = runner.invoke(main, ["transparency", "init-key"], obj={"settings": settings_})
    again = runner.invoke(main, ["transparency", "init-key"], obj={"settings": settings_})

    assert made.exit_code == 0, made.output
    assert f"verifier key: {load_signer(settings_).verifier.key_string()}" in made.output
    assert again.exit_code == 1
    assert again.output.startswith("error: ") and again.output.count("\n") == 1


def test_rotation_re_signs_with_the_new_key_and_old_checkpoints_keep_verifying(
    session: Session,
) -> None:
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    store = MemoryTileStore()
    _write(session, 2)
    before = integrate(session, store=store, signer=old, origin=ORIGIN)

    after = integrate(session, store=store, signer=new, origin=ORIGIN)

    assert after.signed and after.size == before.size
    rotated = load_settings(
        transparency_signer_key=new.key_string(),
        transparency_origin=ORIGIN,
        transparency_old_verifier_keys=old.verifier.key_string(),
    )
    keys = verifier_keys(rotated)
    assert keys == [new.verifier.key_string(), old.verifier.key_string()]
    verifiers = [parse_verifier_key(key) for key in keys]
    for note in (before.note, after.note):
        assert note is not None
        assert open_checkpoint(note, origin=ORIGIN, verifiers=verifiers).checkpoint.size
    assert check_log(session, rotated, store).problem is None
    _write(session, 1)
    grown = integrate(session, store=store, signer=new, origin=ORIGIN)
    assert grown.note is not None
    open_checkpoint(grown.note, origin=ORIGIN, verifiers=[new.verifier])


def test_a_bad_old_verifier_key_is_refused_at_start_up() -> None:
    from credits.settings import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="CREDITS_TRANSPARENCY_OLD_VERIFIER_KEYS"):
        load_settings(transparency_old_verifier_keys="not-a-key")


# Running it: the platform's storage, the checkpoint file, status, the CLI.


def test_a_run_writes_tiles_and_the_checkpoint_file_and_verify_passes(
    joined_session_factory: sessionmaker[Session], session: Session, tmp_path: Path
) -> None:
    settings_ = _settings(tmp_path)
    init_key(settings_)
    _write(session, 4)

    result = run_integration(joined_session_factory, settings_)

    assert read_checkpoint_file(settings_) == latest_checkpoint(session) == result.note
    store = tile_store(settings_)
    assert len(read_entries(store, result.size, 0, result.size)) == result.size
    assert (tmp_path / "var" / "storage" / "transparency" / "checkpoint").exists()
    status = log_status(session, settings_)
    assert (status.size, status.unintegrated) == (result.size, 0)
    assert status.integration_delay_s is not None and status.integration_delay_s >= 0
    runner = CliRunner()
    obj = {"settings": settings_, "session_factory": joined_session_factory}
    verified = runner.invoke(main, ["transparency", "verify"], obj=obj)
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"ok: {result.size} entries")
    metrics = runner.invoke(main, ["transparency", "status", "--prometheus"], obj=obj)
    assert f"credits_transparency_tree_size {float(result.size)}" in metrics.output


def test_the_cli_verify_names_the_first_mismatch_and_exits_1(
    joined_session_factory: sessionmaker[Session], session: Session, tmp_path: Path
) -> None:
    settings_ = _settings(tmp_path)
    init_key(settings_)
    _write(session, 3)
    run_integration(joined_session_factory, settings_)
    victim, index = _indexed(session)[1]
    _rewrite_row(session, victim)

    verified = CliRunner().invoke(
        main,
        ["transparency", "verify"],
        obj={"settings": settings_, "session_factory": joined_session_factory},
    )

    assert verified.exit_code == 1
    assert f"entry {index} (audit row {victim})" in verified.output
    assert verified.output.count("\n") == 1


def test_status_counts_rows_waiting_and_their_age(session: Session, tmp_path: Path) -> None:
    settings_ = _settings(tmp_path)
    _write(session, 2)

    status = log_status(session, settings_)

    assert status.unintegrated >= 2 and status.size == 0
    assert status.oldest_unintegrated_age_s is not None
    assert status.verifier_keys == []


def test_the_integrator_refuses_to_run_without_a_key(
    joined_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        ["transparency", "integrate"],
        obj={"settings": _settings(tmp_path), "session_factory": joined_session_factory},
    )

    assert result.exit_code == 1
    assert "credits transparency init-key" in result.output


def test_the_embedded_chore_makes_its_key_and_integrates(
    joined_session_factory: sessionmaker[Session], session: Session, tmp_path: Path
) -> None:
    settings_ = _settings(tmp_path)
    _write(session, 1)

    assert "transparency" in Chores(joined_session_factory, settings_).run_due(now=0.0)

    assert settings_.transparency_key_path.exists()
    assert log_status(session, settings_).unintegrated == 0


def test_the_celery_task_integrates_and_is_on_the_beat_schedule(
    joined_session_factory: sessionmaker[Session], session: Session, tmp_path: Path
) -> None:
    settings_ = _settings(tmp_path, task_always_eager=True)
    init_key(settings_)
    _write(session, 2)
    app = make_celery(settings_, session_factory=joined_session_factory)

    result = app.tasks[INTEGRATE_LOG].delay().get(timeout=10)

    assert app.conf.beat_schedule["integrate-log"]["task"] == INTEGRATE_LOG
    assert result["integrated"] >= 2 and result["busy"] is False
    assert log_status(session, settings_).unintegrated == 0
