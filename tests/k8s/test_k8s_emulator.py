"""The Kubernetes API emulator as the real ``kubernetes`` client sees it over HTTP:
discovery, CRUD, selectors, pagination, patches, conflicts, finalizers, watches and
injected faults."""

from __future__ import annotations

import time
from typing import Any

import pytest
import urllib3
from k8s_bodies import job_manifest, pod_manifest
from k8s_emulator import K8sEmulator
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

pytest_plugins = ["k8s_fixtures"]  # the k8s_emu and k8s_api fixtures

NS = "default"


def _events(
    func: Any, *args: Any, count: int, timeout: int = 5, **kwargs: Any
) -> list[tuple[str, Any]]:
    """The first ``count`` events of a watch, as (type, object)."""
    seen: list[tuple[str, Any]] = []
    for event in watch.Watch().stream(func, *args, timeout_seconds=timeout, **kwargs):
        seen.append((event["type"], event["object"]))
        if len(seen) >= count:
            break
    return seen


def test_discovery_endpoints_answer_version_and_resource_lists(
    k8s_api: client.ApiClient,
) -> None:
    assert client.VersionApi(k8s_api).get_code().git_version.startswith("v1.")
    assert client.CoreApi(k8s_api).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(k8s_api).get_api_versions().groups
    assert [g.name for g in groups] == ["batch", "networking.k8s.io"]
    core = {r.name for r in client.CoreV1Api(k8s_api).get_api_resources().resources}
    assert {"namespaces", "nodes", "pods", "pods/log", "events"} <= core
    batch = {r.name for r in client.BatchV1Api(k8s_api).get_api_resources().resources}
    assert {"jobs", "jobs/status"} <= batch
    networking = client.NetworkingV1Api(k8s_api).get_api_resources().resources
    assert {r.name for r in networking} == {"networkpolicies"}


def test_crud_round_trip_of_a_job_with_one_global_resource_version(
    k8s_api: client.ApiClient,
) -> None:
    batch = client.BatchV1Api(k8s_api)
    created = batch.create_namespaced_job(NS, job_manifest("train", labels={"team": "a"}))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    read = batch.read_namespaced_job("train", NS)
    assert read.metadata.resource_version == created.metadata.resource_version
    assert read.spec.template.spec.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    core = client.CoreV1Api(k8s_api)
    namespace = core.create_namespace({"metadata": {"name": "other"}})
    assert int(namespace.metadata.resource_version) > int(created.metadata.resource_version)
    read.metadata.labels["team"] = "b"
    replaced = batch.replace_namespaced_job("train", NS, read)
    assert replaced.metadata.labels == {"team": "b"}
    assert int(replaced.metadata.resource_version) > int(namespace.metadata.resource_version)
    batch.delete_namespaced_job("train", NS)
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job("train", NS)
    assert gone.value.status == 404
    assert '"reason":"NotFound"' in gone.value.body.replace(" ", "")


def test_generate_name_gives_distinct_names_and_duplicate_create_is_409_already_exists(
    k8s_api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(k8s_api)
    body = pod_manifest("")
    body["metadata"] = {"generateName": "worker-"}
    first, second = core.create_namespaced_pod(NS, body), core.create_namespaced_pod(NS, body)
    assert first.metadata.name.startswith("worker-")
    assert first.metadata.name != second.metadata.name
    core.create_namespaced_pod(NS, pod_manifest("fixed"))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(NS, pod_manifest("fixed"))
    assert exc.value.status == 409
    assert '"reason": "AlreadyExists"' in exc.value.body


def test_invalid_bodies_are_422_and_unknown_namespace_is_404(k8s_api: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api)
    no_containers = {"metadata": {"name": "empty"}, "spec": {"containers": []}}
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(NS, no_containers)
    assert exc.value.status == 422
    assert "spec.containers" in exc.value.body
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_pod(NS, pod_manifest("Not_A_Name"))
    assert bad_name.value.status == 422
    with pytest.raises(ApiException) as missing_ns:
        core.create_namespaced_pod("nowhere", pod_manifest("p"))
    assert missing_ns.value.status == 404


def test_label_selectors_support_equality_sets_and_existence(k8s_api: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_pod(NS, pod_manifest("a", {"tier": "gpu", "team": "x"}))
    core.create_namespaced_pod(NS, pod_manifest("b", {"tier": "cpu", "team": "y"}))
    core.create_namespaced_pod(NS, pod_manifest("c", {"tier": "gpu"}))

    def names(selector: str) -> list[str]:
        pods = core.list_namespaced_pod(NS, label_selector=selector).items
        return [p.metadata.name for p in pods]

    assert names("tier=gpu") == ["a", "c"]
    assert names("tier==gpu,team=x") == ["a"]
    assert names("tier!=gpu") == ["b"]
    assert names("team in (x, y)") == ["a", "b"]
    assert names("team notin (x)") == ["b", "c"]
    assert names("team") == ["a", "b"]
    assert names("!team") == ["c"]
    with pytest.raises(ApiException) as exc:
        names("tier in gpu")
    assert exc.value.status == 400


def test_field_selectors_on_name_namespace_phase_and_node(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    k8s_emu.add_namespace("team-b")
    k8s_emu.add_node("node-a", gpus=8)
    core.create_namespaced_pod(NS, pod_manifest("one"))
    core.create_namespaced_pod("team-b", pod_manifest("two"))
    k8s_emu.tick()  # both scheduled onto node-a and running
    core.create_namespaced_pod(NS, pod_manifest("three"))  # still pending

    def names(selector: str) -> list[str]:
        pods = core.list_pod_for_all_namespaces(field_selector=selector).items
        return sorted(p.metadata.name for p in pods)

    assert names("metadata.name=two") == ["two"]
    assert names("metadata.namespace=team-b") == ["two"]
    assert names("status.phase=Running") == ["one", "two"]
    assert names("status.phase!=Running") == ["three"]
    assert names("spec.nodeName=node-a,metadata.namespace=default") == ["one"]
    with pytest.raises(ApiException) as exc:
        names("spec.containers=x")
    assert exc.value.status == 400


def test_pagination_with_limit_and_continue_tokens(k8s_api: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_api)
    for i in range(5):
        core.create_namespaced_pod(NS, pod_manifest(f"p{i}"))
    pages: list[list[str]] = []
    token = None
    while True:
        page = core.list_namespaced_pod(NS, limit=2, _continue=token)
        pages.append([p.metadata.name for p in page.items])
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 5 - sum(len(p) for p in pages)
    assert pages == [["p0", "p1"], ["p2", "p3"], ["p4"]]


def test_continue_token_below_compaction_floor_answers_410(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    for i in range(3):
        core.create_namespaced_pod(NS, pod_manifest(f"p{i}"))
    token = core.list_namespaced_pod(NS, limit=1).metadata._continue
    core.create_namespaced_pod(NS, pod_manifest("later"))
    k8s_emu.compact()
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod(NS, limit=1, _continue=token)
    assert exc.value.status == 410


def test_merge_strategic_and_json_patches(k8s_api: client.ApiClient) -> None:
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train", labels={"a": "1", "b": "2"}))
    merged = batch.patch_namespaced_job(
        "train",
        NS,
        {"metadata": {"labels": {"a": None, "c": "3"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged.metadata.labels == {"b": "2", "c": "3"}
    strategic = batch.patch_namespaced_job(  # a dict body is sent as strategic merge
        "train", NS, {"metadata": {"annotations": {"note": "x"}}}
    )
    assert strategic.metadata.annotations == {"note": "x"}
    assert strategic.metadata.labels == {"b": "2", "c": "3"}
    patched = batch.patch_namespaced_job(
        "train",
        NS,
        [
            {"op": "replace", "path": "/metadata/labels/b", "value": "20"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["credits.dev/metering"]},
            {"op": "remove", "path": "/metadata/labels/c"},
        ],
    )
    assert patched.metadata.labels == {"b": "20"}
    assert patched.metadata.finalizers == ["credits.dev/metering"]
    with pytest.raises(ApiException) as failed_test:
        batch.patch_namespaced_job(
            "train", NS, [{"op": "test", "path": "/metadata/labels/b", "value": "nope"}]
        )
    assert failed_test.value.status == 422


def test_put_with_stale_resource_version_is_409_conflict(k8s_api: client.ApiClient) -> None:
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train"))
    stale = batch.read_namespaced_job("train", NS)
    batch.patch_namespaced_job("train", NS, {"metadata": {"labels": {"x": "1"}}})
    stale.metadata.labels = {"y": "2"}
    with pytest.raises(ApiException) as exc:
        batch.replace_namespaced_job("train", NS, stale)
    assert exc.value.status == 409
    assert '"reason": "Conflict"' in exc.value.body
    assert batch.read_namespaced_job("train", NS).metadata.labels == {"x": "1"}


def test_status_is_only_written_through_the_status_subresource(
    k8s_api: client.ApiClient,
) -> None:
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train"))
    batch.patch_namespaced_job("train", NS, {"status": {"active": 5}})
    assert batch.read_namespaced_job("train", NS).status.active is None
    batch.patch_namespaced_job_status("train", NS, {"status": {"active": 5}})
    assert batch.read_namespaced_job_status("train", NS).status.active == 5


def test_finalizers_keep_a_deleted_job_until_the_last_one_is_removed(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(
        NS, job_manifest("train", finalizers=["credits.dev/metering", "other/hold"])
    )
    k8s_emu.tick()
    assert len(k8s_emu.job_pods(NS, "train")) == 1
    batch.delete_namespaced_job("train", NS, propagation_policy="Background")
    held = batch.read_namespaced_job("train", NS)
    assert held.metadata.deletion_timestamp is not None
    assert len(k8s_emu.job_pods(NS, "train")) == 1  # dependents go once the owner is gone
    with pytest.raises(ApiException) as no_new:
        batch.patch_namespaced_job(
            "train", NS, {"metadata": {"finalizers": ["credits.dev/metering", "other/hold", "x"]}}
        )
    assert no_new.value.status == 422
    batch.patch_namespaced_job("train", NS, [{"op": "remove", "path": "/metadata/finalizers/1"}])
    assert batch.read_namespaced_job("train", NS).metadata.finalizers == ["credits.dev/metering"]
    batch.patch_namespaced_job(
        "train",
        NS,
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as exc:
        batch.read_namespaced_job("train", NS)
    assert exc.value.status == 404
    assert k8s_emu.job_pods(NS, "train") == []


def test_job_delete_propagation_orphan_by_default_background_deletes_pods(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("kept"))
    batch.create_namespaced_job(NS, job_manifest("gone"))
    k8s_emu.tick()
    batch.delete_namespaced_job("kept", NS)
    orphans = k8s_emu.job_pods(NS, "kept")
    assert len(orphans) == 1
    assert "ownerReferences" not in orphans[0]["metadata"]
    batch.delete_namespaced_job(
        "gone", NS, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    assert k8s_emu.job_pods(NS, "gone") == []


def test_watch_streams_added_modified_deleted_in_order_and_resumes_from_a_version(
    k8s_api: client.ApiClient,
) -> None:
    batch = client.BatchV1Api(k8s_api)
    start = batch.list_namespaced_job(NS).metadata.resource_version
    batch.create_namespaced_job(NS, job_manifest("train"))
    batch.patch_namespaced_job("train", NS, {"metadata": {"labels": {"step": "1"}}})
    batch.delete_namespaced_job("train", NS)
    seen = _events(batch.list_namespaced_job, NS, count=3, resource_version=start)
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(obj.metadata.resource_version) for _, obj in seen]
    assert versions == sorted(versions)
    assert seen[1][1].metadata.labels == {"step": "1"}
    resume_from = seen[1][1].metadata.resource_version
    batch.create_namespaced_job(NS, job_manifest("again"))
    resumed = _events(batch.list_namespaced_job, NS, count=2, resource_version=resume_from)
    assert [(t, o.metadata.name) for t, o in resumed] == [("DELETED", "train"), ("ADDED", "again")]


def test_watch_without_version_starts_with_synthetic_added_and_honours_selectors(
    k8s_api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_pod(NS, pod_manifest("gpu-1", {"tier": "gpu"}))
    core.create_namespaced_pod(NS, pod_manifest("cpu-1", {"tier": "cpu"}))
    seen = _events(core.list_namespaced_pod, NS, count=1, timeout=1, label_selector="tier=gpu")
    assert [(t, o.metadata.name) for t, o in seen] == [("ADDED", "gpu-1")]
    start = core.list_namespaced_pod(NS).metadata.resource_version
    core.patch_namespaced_pod("cpu-1", NS, {"metadata": {"labels": {"tier": "gpu"}}})
    core.patch_namespaced_pod("gpu-1", NS, {"metadata": {"labels": {"tier": "cpu"}}})
    moved = _events(
        core.list_namespaced_pod, NS, count=2, resource_version=start, label_selector="tier=gpu"
    )
    assert [(t, o.metadata.name) for t, o in moved] == [("ADDED", "cpu-1"), ("DELETED", "gpu-1")]


def test_watch_sends_bookmarks_when_allowed(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.api.bookmark_interval_s = 0.05
    batch = client.BatchV1Api(k8s_api)
    start = batch.list_namespaced_job(NS).metadata.resource_version
    stream = watch.Watch().stream(
        batch.list_namespaced_job,
        NS,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
        deserialize=False,
    )
    event = next(iter(stream))
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"] == start


def test_watch_below_compaction_floor_answers_410(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(k8s_api)
    old = batch.list_namespaced_job(NS).metadata.resource_version
    batch.create_namespaced_job(NS, job_manifest("train"))
    k8s_emu.compact()
    # The client turns the ERROR event (a Status with code 410) into ApiException(410);
    # without timeout_seconds it first retries once from the same version.
    with pytest.raises(ApiException) as exc:
        _events(batch.list_namespaced_job, NS, count=1, resource_version=old)
    assert exc.value.status == 410
    assert "Expired" in exc.value.reason
    raw = watch.Watch().stream(
        batch.list_namespaced_job, NS, resource_version=old, _preload_content=False
    )
    with pytest.raises(ApiException):
        next(iter(raw))
    now = batch.list_namespaced_job(NS).metadata.resource_version
    batch.delete_namespaced_job("train", NS)
    assert [
        t for t, _ in _events(batch.list_namespaced_job, NS, count=1, resource_version=now)
    ] == ["DELETED"]


def test_one_shot_500_503_and_429_faults_reach_the_client(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(k8s_api)
    k8s_emu.fail_next("POST", "jobs", status=500)
    with pytest.raises(ApiException) as internal:
        batch.create_namespaced_job(NS, job_manifest("train"))
    assert internal.value.status == 500
    assert batch.list_namespaced_job(NS).items == []  # the failed create left nothing
    batch.create_namespaced_job(NS, job_manifest("train"))  # one shot: the retry succeeds
    k8s_emu.fail_next("get", "jobs", status=503)
    with pytest.raises(ApiException) as unavailable:
        batch.read_namespaced_job("train", NS)
    assert unavailable.value.status == 503
    k8s_emu.fail_next("create", "jobs", status=429, retry_after=7)
    with pytest.raises(ApiException) as throttled:
        batch.create_namespaced_job(NS, job_manifest("second"))
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "7"
    assert '"reason": "TooManyRequests"' in throttled.value.body


def test_429_with_retry_after_on_a_read_is_retried_inside_urllib3(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    """What the real client does: urllib3's default Retry honours Retry-After on 429/503
    for idempotent methods (GET, PUT, DELETE), so the caller never sees the error."""
    batch = client.BatchV1Api(k8s_api)
    k8s_emu.fail_next("list", "jobs", status=429, retry_after=0)
    assert batch.list_namespaced_job(NS).items == []
    assert ("error", "list", "jobs") in k8s_emu.faults.fired
    lists = [p for m, p in k8s_emu.requests if m == "GET" and p.endswith("/jobs")]
    assert len(lists) == 2


def test_stalled_create_times_out_on_the_client_but_still_happens(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    """A POST is not retried by urllib3 on a read timeout; the stalled request is still
    served afterwards, so a retried create meets AlreadyExists."""
    core = client.CoreV1Api(k8s_api)
    k8s_emu.stall_next("create", "pods", 0.5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.create_namespaced_pod(NS, pod_manifest("slow"), _request_timeout=0.1)
    deadline = time.monotonic() + 3
    while k8s_emu.find("pods", NS, "slow") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(NS, pod_manifest("slow"))
    assert exc.value.status == 409


def test_dropped_watch_connection_breaks_the_stream_mid_way(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    for i in range(3):
        core.create_namespaced_pod(NS, pod_manifest(f"p{i}"))
    k8s_emu.drop_next_watch("pods", after_events=1)
    seen: list[str] = []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for event in watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=5):
            seen.append(event["object"].metadata.name)
    assert seen == ["p0"]
    assert [o.metadata.name for _, o in _events(core.list_namespaced_pod, NS, count=3)] == [
        "p0",
        "p1",
        "p2",
    ]


def test_duplicated_and_reordered_watch_events(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    start = core.list_namespaced_pod(NS).metadata.resource_version
    for i in range(4):
        core.create_namespaced_pod(NS, pod_manifest(f"p{i}"))
    k8s_emu.duplicate_next_watch("pods")
    doubled = _events(core.list_namespaced_pod, NS, count=4, resource_version=start)
    assert [o.metadata.name for _, o in doubled] == ["p0", "p0", "p1", "p1"]
    k8s_emu.reorder_next_watch("pods")
    swapped = _events(core.list_namespaced_pod, NS, count=4, resource_version=start)
    assert [o.metadata.name for _, o in swapped] == ["p1", "p0", "p3", "p2"]
    assert [
        o.metadata.name
        for _, o in _events(core.list_namespaced_pod, NS, count=2, resource_version=start)
    ] == ["p0", "p1"]
