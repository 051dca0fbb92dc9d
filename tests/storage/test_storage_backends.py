"""Which store the settings build, and what only S3 does: signed requests and
presigned download URLs, checked against the real S3 server."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import s3_server
from s3_server import S3Server

from credits.settings import SettingsError, load_settings
from credits.storage import (
    S3Options,
    StorageUnavailable,
    blob_store_for_url,
    blob_store_from_settings,
    content_disposition,
)
from credits.storage.fs_store import FsspecBlobStore, LocalBlobStore
from credits.storage.s3_store import S3BlobStore


def test_the_embedded_profile_stores_blobs_under_var(tmp_path: Path) -> None:
    settings = load_settings(var_dir=tmp_path / "var")

    store = blob_store_from_settings(settings)
    blob = store.put_stream([b"embedded"], max_bytes=100)

    assert isinstance(store, LocalBlobStore)
    stored = tmp_path / "var" / "storage" / "blobs" / "sha256" / blob.sha256[:2]
    assert (stored / blob.sha256[2:4] / blob.sha256).read_bytes() == b"embedded"


def test_s3_settings_reach_the_server(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_STORAGE_URL", s3_server.fresh_url())
    monkeypatch.setenv("CREDITS_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("CREDITS_S3_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("CREDITS_S3_SECRET_ACCESS_KEY", s3_server.secret_access_key)

    settings = load_settings()
    store = blob_store_from_settings(settings)
    blob = store.put_stream([b"from settings"], max_bytes=100)

    assert isinstance(store, S3BlobStore)
    assert store.verify(blob.sha256)
    assert s3_server.secret_access_key not in repr(settings)


def test_an_s3_key_without_its_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_S3_ACCESS_KEY_ID", "AKIAEXAMPLE")

    with pytest.raises(SettingsError, match="S3_ACCESS_KEY_ID and CREDITS_S3_SECRET_ACCESS_KEY"):
        load_settings()


def test_a_wrong_secret_fails_the_put_and_stores_nothing(s3_server: S3Server) -> None:
    url = s3_server.fresh_url()
    wrong = S3Options(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key="not-the-secret",
    )

    with pytest.raises(StorageUnavailable, match="could not write the file"):
        blob_store_for_url(url, s3_options=wrong).put_stream([b"x"], max_bytes=10)

    store = blob_store_for_url(url, s3_options=s3_server.options)
    assert isinstance(store, S3BlobStore)
    assert store.list_keys() == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://host/x", "scheme must be file, s3 or memory"),
        ("/var/storage", "names no scheme"),
        ("file://relative/path", "needs an absolute path"),
        ("s3://", "needs a bucket"),
    ],
)
def test_an_unusable_storage_url_is_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        blob_store_for_url(url)


def test_the_s3_secret_never_shows_in_options() -> None:
    options = S3Options(access_key_id="AKIAEXAMPLE", secret_access_key="hunter2-secret")

    assert "hunter2-secret" not in repr(options)


def test_a_presigned_url_downloads_the_blob_under_its_file_name(s3_server: S3Server) -> None:
    store = s3_server.fresh_store()
    data = b"id,label\n1,cat\n"
    blob = store.put_stream([data], max_bytes=100)

    url = store.presigned_url(blob.sha256, expires_s=60, filename="train/données.csv")

    assert url is not None
    assert url.startswith(s3_server.endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our test server
        assert response.read() == data
        assert response.headers["Content-Disposition"] == content_disposition("données.csv")


def test_a_presigned_url_without_its_signature_is_refused(s3_server: S3Server) -> None:
    store = s3_server.fresh_store()
    blob = store.put_stream([b"private until signed"], max_bytes=100)
    url = store.presigned_url(blob.sha256, expires_s=60, filename="a.txt")
    assert url is not None

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.split("?", 1)[0], timeout=10)  # noqa: S310 - our test server

    assert refused.value.code == 403


@pytest.mark.parametrize("expires_s", [0, 7 * 24 * 3600 + 1])
def test_a_presigned_url_lives_one_second_to_seven_days(
    any_blob_store: FsspecBlobStore, expires_s: int
) -> None:
    blob = any_blob_store.put_stream([b"x"], max_bytes=1)

    with pytest.raises(ValueError, match="expires_s must be 1 to 604800"):
        any_blob_store.presigned_url(blob.sha256, expires_s=expires_s, filename="x")


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("data.csv", "attachment; filename=\"data.csv\"; filename*=UTF-8''data.csv"),
        (
            "train/part 1.jsonl",
            "attachment; filename=\"part 1.jsonl\"; filename*=UTF-8''part%201.jsonl",
        ),
        (
            "résumé.txt",
            "attachment; filename=\"resume.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt",
        ),
        ('a"b\\c%.txt', "attachment; filename=\"a_b_c_.txt\"; filename*=UTF-8''a%22b%5Cc%25.txt"),
        (
            "数据.csv",
            "attachment; filename=\"download.csv\"; filename*=UTF-8''%E6%95%B0%E6%8D%AE.csv",
        ),
    ],
)
def test_content_disposition_names_the_file_safely(filename: str, header: str) -> None:
    assert content_disposition(filename) == header


def test_a_server_binary_that_exits_is_reported_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the s3_server fixture turns into a failure in CI and a skip elsewhere.
    monkeypatch.setattr(s3_server, "weed_binary", lambda: Path("/bin/false"))

    with (
        pytest.raises(s3_server.S3ServerUnavailable, match="weed mini exited with 1"),
        s3_server.running_s3_server(tmp_path),
    ):
        pytest.fail("the server cannot have started")


def test_a_missing_server_binary_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_server.sysconfig, "get_path", lambda _name: "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(s3_server.S3ServerUnavailable, match="install the dev extras"):
        s3_server.weed_binary()
