"""``credits datasets`` through click, on the rolled-back connection and a local blob store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from datasets_world import CSV, DATASHEET, METADATA, DatasetsWorld, build_world
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.datasets import queries
from credits.datasets.models import VersionState
from credits.storage import blob_key

Run = Callable[..., Result]


@pytest.fixture
def world(session: Session, tmp_path: Path) -> DatasetsWorld:
    return build_world(session, tmp_path / "blobs")


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session], world: DatasetsWorld) -> Run:
    def invoke(*args: str) -> Result:
        obj = {"session_factory": joined_session_factory, "blob_store": world.store}
        return CliRunner().invoke(main, list(args), obj=obj)

    return invoke


def _draft(run: Run, world: DatasetsWorld, tmp_path: Path) -> str:
    created = run(
        "datasets",
        "create",
        "--project",
        str(world.project_id),
        "--title",
        "Calving",
        "--as",
        "pi@uni.example",
    )
    assert created.exit_code == 0, created.output
    version_id = created.output.split("draft version ", 1)[1].split(" ", 1)[0]
    metadata = tmp_path / "metadata.json"
    metadata.write_text(json.dumps({"metadata": METADATA, "datasheet": DATASHEET}))
    edited = run(
        "datasets", "edit", version_id, "--from-json", str(metadata), "--as", "pi@uni.example"
    )
    assert edited.exit_code == 0, edited.output
    return version_id


def test_create_edit_upload_publish_show_and_list(
    run: Run, world: DatasetsWorld, session: Session, tmp_path: Path
) -> None:
    version_id = _draft(run, world, tmp_path)
    local = tmp_path / "events.csv"
    local.write_bytes(CSV * 20_000)  # a few MB, read in 1 MiB chunks

    uploaded = run("datasets", "upload", version_id, str(local), "--as", "member@uni.example")
    published = run("datasets", "publish", version_id, "--as", "pi@uni.example")
    shown = run("datasets", "show", version_id, "--format", "json")
    listed = run("datasets", "list", "--state", "published", "--json")
    sums = run("datasets", "show", version_id, "--format", "sha256sums")

    assert uploaded.exit_code == 0, uploaded.output
    digest = hashlib.sha256(CSV * 20_000).hexdigest()
    assert uploaded.output.startswith(digest)
    assert published.exit_code == 0, published.output
    assert "manifest sha256" in published.output
    version = json.loads(shown.output)
    assert version["state"] == "published"
    assert version["files"] == [
        {
            "name": "events.csv",
            "sha256": digest,
            "size": len(CSV) * 20_000,
            "media_type": "text/csv",
            "download_count": 0,
        }
    ]
    assert [item["id"] for item in json.loads(listed.output)["items"]] == [int(version_id)]
    assert sums.output == f"{digest}  events.csv\n"
    assert world.store.verify(digest)


@pytest.mark.parametrize("fmt", ["croissant", "datacite"])
def test_show_prints_the_metadata_documents(
    run: Run, world: DatasetsWorld, tmp_path: Path, fmt: str
) -> None:
    version_id = _draft(run, world, tmp_path)
    shown = run("datasets", "show", version_id, "--format", fmt, "--base-url", "https://d.example")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert "Glacier calving events" in json.dumps(document)


def test_refusals_are_one_line_and_exit_1(run: Run, world: DatasetsWorld, tmp_path: Path) -> None:
    version_id = _draft(run, world, tmp_path)
    local = tmp_path / "events.csv"
    local.write_bytes(CSV)

    traversal = run(
        "datasets", "upload", version_id, str(local), "--name", "../x.csv", "--as", "pi@uni.example"
    )
    incomplete = run("datasets", "publish", version_id, "--as", "pi@uni.example")
    outsider = run("datasets", "publish", version_id, "--as", "outsider@uni.example")
    not_ops = run("datasets", "takedown", version_id, "--reason", "x", "--as", "pi@uni.example")

    assert traversal.exit_code == 1
    assert traversal.output.startswith("error: a file name may not hold '..'")
    assert incomplete.exit_code == 1
    assert incomplete.output == "error: publishing needs: files\n"
    assert outsider.exit_code == 1
    assert outsider.output == f"error: no dataset version has the id {version_id}\n"
    assert not_ops.exit_code == 1
    assert not_ops.output == "error: only ops may take a dataset version down\n"


def test_deprecate_and_takedown(
    run: Run, world: DatasetsWorld, session: Session, tmp_path: Path
) -> None:
    version_id = _draft(run, world, tmp_path)
    local = tmp_path / "events.csv"
    local.write_bytes(CSV)
    run("datasets", "upload", version_id, str(local), "--as", "pi@uni.example")
    run("datasets", "publish", version_id, "--as", "pi@uni.example")
    dataset_id = queries.get_version(session, None, int(version_id)).dataset_id
    second = run("datasets", "new-version", str(dataset_id), "--as", "pi@uni.example")
    second_id = second.output.split(": ", 1)[1].split(" ", 1)[0]
    run("datasets", "publish", second_id, "--as", "pi@uni.example")

    deprecated = run(
        "datasets", "deprecate", version_id, "--successor", second_id, "--as", "pi@uni.example"
    )
    taken = run(
        "datasets",
        "takedown",
        second_id,
        "--reason",
        "wrong licence",
        "--as",
        "ops@platform.example",
    )

    assert deprecated.exit_code == 0, deprecated.output
    assert taken.exit_code == 0, taken.output
    # The second version carried events.csv over: the deprecated first still serves it.
    first = queries.get_version(session, None, int(version_id))
    assert (
        "warning: some of the same files are still served by "
        f"{first.public_id} (dataset {dataset_id}, version 1); take those down too if the"
        " reason covers them"
    ) in taken.output
    assert first.state is VersionState.DEPRECATED
    assert first.successor_public_id == queries.get_version(session, None, int(second_id)).public_id
    assert queries.get_version(session, None, int(second_id)).takedown_reason == "wrong licence"


def test_verify_finds_a_flipped_byte_and_a_missing_file_by_name(
    run: Run, world: DatasetsWorld, tmp_path: Path
) -> None:
    version_id = _draft(run, world, tmp_path)
    for name, data in (("events.csv", CSV), ("notes.txt", b"notes\n"), ("gone.bin", b"\x00" * 9)):
        local = tmp_path / name
        local.write_bytes(data)
        upload = run("datasets", "upload", version_id, str(local), "--as", "pi@uni.example")
        assert upload.exit_code == 0, upload.output
    assert run("datasets", "verify").exit_code == 0
    root = tmp_path / "blobs"
    stored = root / blob_key(hashlib.sha256(CSV).hexdigest())
    data = bytearray(stored.read_bytes())
    data[10] ^= 0x01
    stored.write_bytes(bytes(data))
    (root / blob_key(hashlib.sha256(b"\x00" * 9).hexdigest())).unlink()

    result = run("datasets", "verify")

    assert result.exit_code == 1
    assert "corrupt: events.csv (version " in result.output
    assert "missing: gone.bin (version " in result.output
    assert "notes.txt" not in result.output
    assert "checked 3 files (3 stored blobs): 2 problems" in result.output


def test_an_upload_to_a_published_version_is_refused_before_anything_is_stored(
    run: Run, world: DatasetsWorld, tmp_path: Path
) -> None:
    version_id = _draft(run, world, tmp_path)
    first = tmp_path / "events.csv"
    first.write_bytes(CSV)
    run("datasets", "upload", version_id, str(first), "--as", "pi@uni.example")
    assert run("datasets", "publish", version_id, "--as", "pi@uni.example").exit_code == 0
    late = tmp_path / "late.csv"
    late.write_bytes(b"late,data\n1,2\n")

    refused = run("datasets", "upload", version_id, str(late), "--as", "pi@uni.example")

    assert refused.exit_code == 1
    assert refused.output.startswith("error: version 1 of this dataset is published")
    assert not world.store.exists(hashlib.sha256(late.read_bytes()).hexdigest())


def test_an_upload_over_the_version_size_limit_is_refused_before_it_is_stored(
    run: Run, world: DatasetsWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITS_DATASET_MAX_VERSION_BYTES", str(len(CSV) + 5))
    version_id = _draft(run, world, tmp_path)
    first = tmp_path / "events.csv"
    first.write_bytes(CSV)
    second = tmp_path / "more.csv"
    second.write_bytes(b"a,b\n1,2\n")

    fits = run("datasets", "upload", version_id, str(first), "--as", "pi@uni.example")
    refused = run("datasets", "upload", version_id, str(second), "--as", "pi@uni.example")

    assert fits.exit_code == 0, fits.output
    assert refused.exit_code == 1
    total = len(CSV) + len(second.read_bytes())
    assert refused.output == (
        f"error: the version's files would come to {total:,} bytes, "
        f"over the limit of {len(CSV) + 5:,}\n"
    )
    assert not world.store.exists(hashlib.sha256(second.read_bytes()).hexdigest())
