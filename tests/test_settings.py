"""Settings: embedded defaults, the generated secret key, production's demands, bad values."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from credits.secret_key_file import MIN_SECRET_KEY_LENGTH, SECRET_KEY_FILE
from credits.settings import (
    ExecutorName,
    Profile,
    SettingsError,
    load_settings,
)

PRODUCTION = {
    "CREDITS_PROFILE": "production",
    "CREDITS_DATABASE_URL": "postgresql://credits@db.example.org/credits",
    "CREDITS_BROKER_URL": "redis://broker.example.org:6379/0",
    "CREDITS_STORAGE_URL": "s3://credits-datasets",
    "CREDITS_SECRET_KEY": "k" * MIN_SECRET_KEY_LENGTH,
}


@pytest.fixture
def var_dir() -> Path:
    """The folder the autouse fixture named in CREDITS_VAR_DIR (not yet created)."""
    return Path(os.environ["CREDITS_VAR_DIR"])


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_embedded_profile_needs_no_settings_and_keeps_everything_under_var_dir(
    var_dir: Path,
) -> None:
    settings = load_settings()

    assert settings.profile is Profile.EMBEDDED
    assert settings.var_dir == var_dir
    assert settings.database_url.get_secret_value() == f"sqlite:///{var_dir / 'credits.db'}"
    assert settings.is_sqlite
    assert settings.broker_url.get_secret_value() == f"sqla+sqlite:///{var_dir / 'broker.db'}"
    assert settings.storage_url == f"file://{(var_dir / 'storage').resolve()}"
    assert settings.executor is ExecutorName.LOCAL
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_embedded_profile_keeps_urls_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_DATABASE_URL", "postgresql://localhost/credits")

    settings = load_settings()

    assert settings.database_url.get_secret_value() == "postgresql://localhost/credits"
    assert not settings.is_sqlite


def test_embedded_secret_key_is_generated_once_readable_only_by_its_owner(var_dir: Path) -> None:
    first = load_settings()

    key_file = var_dir / SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.secret_key.get_secret_value()
    assert len(first.secret_key.get_secret_value()) >= MIN_SECRET_KEY_LENGTH


def test_embedded_secret_key_is_reused_on_the_next_load(var_dir: Path) -> None:
    first = load_settings()
    written = (var_dir / SECRET_KEY_FILE).read_bytes()

    second = load_settings()

    assert second.secret_key.get_secret_value() == first.secret_key.get_secret_value()
    assert (var_dir / SECRET_KEY_FILE).read_bytes() == written


def test_embedded_secret_key_from_the_environment_writes_no_key_file(
    monkeypatch: pytest.MonkeyPatch, var_dir: Path
) -> None:
    monkeypatch.setenv("CREDITS_SECRET_KEY", "s" * MIN_SECRET_KEY_LENGTH)

    settings = load_settings()

    assert settings.secret_key.get_secret_value() == "s" * MIN_SECRET_KEY_LENGTH
    assert not (var_dir / SECRET_KEY_FILE).exists()


def test_production_with_every_service_named_loads_without_embedded_defaults(
    monkeypatch: pytest.MonkeyPatch, var_dir: Path
) -> None:
    _set(monkeypatch, PRODUCTION)

    settings = load_settings()

    assert settings.profile is Profile.PRODUCTION
    assert settings.database_url.get_secret_value() == PRODUCTION["CREDITS_DATABASE_URL"]
    assert settings.secret_key.get_secret_value() == PRODUCTION["CREDITS_SECRET_KEY"]
    assert not var_dir.exists()


@pytest.mark.parametrize(
    "missing",
    ["CREDITS_DATABASE_URL", "CREDITS_BROKER_URL", "CREDITS_STORAGE_URL", "CREDITS_SECRET_KEY"],
)
def test_production_refuses_to_start_without_a_service_url_or_key(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _set(monkeypatch, {name: value for name, value in PRODUCTION.items() if name != missing})

    with pytest.raises(SettingsError, match=missing) as raised:
        load_settings()

    assert "required in production" in str(raised.value)


def test_production_refuses_a_secret_key_shorter_than_32_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {**PRODUCTION, "CREDITS_SECRET_KEY": "k" * (MIN_SECRET_KEY_LENGTH - 1)})

    with pytest.raises(SettingsError, match="CREDITS_SECRET_KEY") as raised:
        load_settings()

    assert "at least 32" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CREDITS_EXECUTOR", "foo"),
        ("CREDITS_DATABASE_URL", "mysql://x"),
        ("CREDITS_PORT", "0"),
        ("CREDITS_PORT", "eighty"),
        ("CREDITS_BROKER_URL", "ftp://x"),
        ("CREDITS_STORAGE_URL", "gs://bucket"),
        ("CREDITS_PROFILE", "staging"),
        ("CREDITS_RATELIMIT_STORAGE_URL", "memcached://x"),
        ("CREDITS_LOGIN_LIMIT_PER_ACCOUNT", "ten a minute"),
        ("CREDITS_LOGIN_LIMIT_PER_ADDRESS", "10/fortnight"),
        ("CREDITS_SESSION_IDLE_HOURS", "0"),
        ("CREDITS_SESSION_MAX_DAYS", "-1"),
        ("CREDITS_TRUSTED_PROXIES", "-1"),
        ("CREDITS_LABEL_STUDIO_TIMEOUT_S", "0"),
        ("CREDITS_LABEL_STUDIO_URL", "ls.example.org"),
        ("CREDITS_LABEL_STUDIO_URL", "https://ls.example.org"),  # without a token
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert variable in message
    assert "\n" not in message
    assert message.startswith("invalid setting")


def test_a_bad_value_is_refused_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch, var_dir: Path
) -> None:
    monkeypatch.setenv("CREDITS_EXECUTOR", "foo")

    with pytest.raises(SettingsError):
        load_settings()

    assert not var_dir.exists()


def _credits_command() -> Path:
    """The console script installed next to this interpreter (.venv/bin/credits)."""
    command = Path(sys.executable).with_name("credits")
    if not command.exists():
        pytest.fail(f"console script {command} is not installed; run `pip install -e .`")
    return command


def test_cli_reports_a_bad_setting_as_one_error_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    environment = {**os.environ, "CREDITS_EXECUTOR": "foo"}

    completed = subprocess.run(
        [str(_credits_command()), "db", "upgrade"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error:")
    assert "CREDITS_EXECUTOR" in lines[0]


def test_processes_starting_together_agree_on_one_secret_key(var_dir: Path) -> None:
    barrier = threading.Barrier(8)
    keys: list[str] = []

    def start() -> None:
        barrier.wait()
        keys.append(load_settings().secret_key.get_secret_value())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(path.name for path in var_dir.iterdir()) == ["secret_key"]


def test_a_truncated_secret_key_file_is_refused(var_dir: Path) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / "secret_key").write_text("short\n")
    with pytest.raises(SettingsError, match="CREDITS_SECRET_KEY") as refused:
        load_settings()
    assert "\n" not in str(refused.value)


def test_relative_paths_are_made_absolute_when_settings_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CREDITS_VAR_DIR", "var")
    monkeypatch.setenv("CREDITS_MAILDIR_PATH", "mail/../maildir")

    settings = load_settings()

    assert settings.var_dir == tmp_path / "var"
    assert settings.jobs_dir == tmp_path / "var" / "jobs"
    assert settings.maildir == tmp_path / "maildir"
    assert (
        settings.database_url.get_secret_value() == f"sqlite:///{tmp_path / 'var' / 'credits.db'}"
    )
    assert (
        settings.broker_url.get_secret_value() == f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    )


def test_a_relative_sqlite_url_is_made_absolute_and_others_are_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CREDITS_DATABASE_URL", "sqlite:///data/credits.db?timeout=5")
    monkeypatch.setenv("CREDITS_BROKER_URL", "sqla+sqlite:////srv/broker.db")

    settings = load_settings()

    assert (
        settings.database_url.get_secret_value()
        == f"sqlite:///{tmp_path / 'data' / 'credits.db'}?timeout=5"
    )
    assert settings.broker_url.get_secret_value() == "sqla+sqlite:////srv/broker.db"
    assert (
        load_settings(database_url="sqlite:///:memory:").database_url.get_secret_value()
        == "sqlite:///:memory:"
    )


def test_production_runs_jobs_on_kubernetes_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, PRODUCTION)

    assert load_settings().executor is ExecutorName.KUBERNETES
    monkeypatch.setenv("CREDITS_EXECUTOR", "simulated")
    assert load_settings().executor is ExecutorName.SIMULATED


def test_production_refuses_the_local_executor_unless_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, PRODUCTION | {"CREDITS_EXECUTOR": "local"})

    with pytest.raises(SettingsError, match="CREDITS_ALLOW_LOCAL_EXECUTOR=true"):
        load_settings()
    monkeypatch.setenv("CREDITS_ALLOW_LOCAL_EXECUTOR", "true")
    assert load_settings().executor is ExecutorName.LOCAL


SECRETS = {
    "CREDITS_DATABASE_URL": "postgresql://credits:db-password-123@db.example.org/credits",
    "CREDITS_BROKER_URL": "redis://:broker-password-456@broker.example.org:6379/0",
    "CREDITS_RATELIMIT_STORAGE_URL": "redis://:limit-password-789@limits.example.org:6379/1",
    "CREDITS_SECRET_KEY": "signing-key-" + "s" * MIN_SECRET_KEY_LENGTH,
}


def test_secrets_never_appear_in_the_settings_repr_or_dump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set(monkeypatch, {**PRODUCTION, **SECRETS})

    settings = load_settings()

    shown = [repr(settings), str(settings), settings.model_dump_json()]
    for secret in ("db-password-123", "broker-password-456", "limit-password-789", "signing-key-"):
        assert all(secret not in text for text in shown), secret
    assert settings.database_url.get_secret_value() == SECRETS["CREDITS_DATABASE_URL"]
    assert settings.ratelimit_storage == SECRETS["CREDITS_RATELIMIT_STORAGE_URL"]


def test_a_refused_database_url_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CREDITS_DATABASE_URL", "mysql://credits:db-password-123@db/credits")

    with pytest.raises(SettingsError, match="CREDITS_DATABASE_URL") as raised:
        load_settings()

    assert "db-password-123" not in str(raised.value)


@pytest.mark.parametrize(
    ("broker", "expected"),
    [
        ("redis://broker.example.org:6379/0", "redis://broker.example.org:6379/0"),
        ("amqp://broker.example.org//", "memory://"),
    ],
)
def test_sign_in_throttling_counts_in_a_redis_broker_else_in_memory(
    monkeypatch: pytest.MonkeyPatch, broker: str, expected: str
) -> None:
    _set(monkeypatch, {**PRODUCTION, "CREDITS_BROKER_URL": broker})

    assert load_settings().ratelimit_storage == expected
    assert load_settings(profile="embedded", broker_url="").ratelimit_storage == "memory://"


def test_label_studio_is_off_by_default_and_its_secrets_are_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().label_studio_url == ""
    _set(
        monkeypatch,
        {
            "CREDITS_LABEL_STUDIO_URL": "https://ls.example.org",
            "CREDITS_LABEL_STUDIO_TOKEN": "ls-token-123",
            "CREDITS_LABEL_STUDIO_WEBHOOK_SECRET": "ls-hook-456",
            "CREDITS_LABEL_STUDIO_TIMEOUT_S": "12.5",
        },
    )

    settings = load_settings()

    shown = [repr(settings), str(settings), settings.model_dump_json()]
    assert all("ls-token-123" not in text and "ls-hook-456" not in text for text in shown)
    assert settings.label_studio_token.get_secret_value() == "ls-token-123"
    assert settings.label_studio_webhook_secret.get_secret_value() == "ls-hook-456"
    assert settings.label_studio_timeout_s == 12.5
