"""Image references and the registry allow-list; label keys the spec refuses, and
specs stored before a label domain was reserved."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from k8s_kube import request
from pydantic import ValidationError

from credits.jobs.images import (
    ImageReference,
    RegistryRule,
    parse_image,
    parse_registries,
    refusal,
)
from credits.jobs.manifests import ManifestOptions, object_labels
from credits.jobs.spec import JobSpec, reserved_label_domain, stored_spec
from credits.settings import Settings


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ubuntu:22.04", ImageReference("docker.io", "library/ubuntu", "22.04")),
        ("ubuntu", ImageReference("docker.io", "library/ubuntu")),
        ("docker.io/ubuntu", ImageReference("docker.io", "library/ubuntu")),
        ("index.docker.io/lab/x", ImageReference("docker.io", "lab/x")),
        ("lab/train:v1", ImageReference("docker.io", "lab/train", "v1")),
        ("localhost:5000/x", ImageReference("localhost:5000", "x")),
        ("localhost/x:1", ImageReference("localhost", "x", "1")),
        (
            "nvcr.io/nvidia/pytorch:24.10-py3",
            ImageReference("nvcr.io", "nvidia/pytorch", "24.10-py3"),
        ),
        ("Registry.Example.org/a/b", ImageReference("registry.example.org", "a/b")),
        ("10.0.0.1:5000/a_b/c-d", ImageReference("10.0.0.1:5000", "a_b/c-d")),
        (
            "ghcr.io/a/b:t@sha256:" + "0" * 64,
            ImageReference("ghcr.io", "a/b", "t", "sha256:" + "0" * 64),
        ),
    ],
)
def test_image_references_name_their_registry(reference: str, expected: ImageReference) -> None:
    assert parse_image(reference) == expected


@pytest.mark.parametrize(
    "reference",
    ["UPPER", "a:b/c", "x:1:2", "ghcr.io/a/b@sha256:zz", "ghcr.io/A/b", "ghcr.io/", "a//b"],
)
def test_malformed_references_are_refused(reference: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_image(reference)


def test_the_allow_list_parses_registries_and_repository_prefixes() -> None:
    assert parse_registries(" ghcr.io, registry.example.org/team/ ,,index.docker.io/library") == (
        RegistryRule("ghcr.io"),
        RegistryRule("registry.example.org", "team"),
        RegistryRule("docker.io", "library"),
    )
    assert parse_registries("") == ()


@pytest.mark.parametrize("text", ["https://ghcr.io", "ghcr.io/Team", "ghcr.io:port", "a b"])
def test_a_malformed_allow_list_is_a_settings_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a registry"):
        parse_registries(text)
    with pytest.raises(ValidationError):
        Settings(job_image_registries=text)


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("ubuntu:22.04", True),  # docker.io/library/ubuntu
        ("library/ubuntu", True),
        ("lab/ubuntu", False),  # docker.io but not library/
        ("ghcr.io/x", True),
        ("ghcr.io.evil.example/x", False),
        ("localhost:5000/x", False),
        ("not a reference", False),
    ],
)
def test_refusal_says_why_an_image_may_not_run(image: str, allowed: bool) -> None:
    rules = parse_registries("docker.io/library,ghcr.io")
    assert (refusal(image, rules) is None) is allowed
    assert refusal(image, ()) is None  # no allow-list: any image


SPEC: dict[str, Any] = {
    "name": "train",
    "image": "python:3.12",
    "command": ["python"],
    "flavour": "a100-80gb",
    "gpus": 1,
    "max_runtime_seconds": 60,
}


@pytest.mark.parametrize(
    ("key", "domain"),
    [
        ("kubernetes.io/x", "kubernetes.io"),
        ("topology.kubernetes.io/zone", "kubernetes.io"),
        ("k8s.io/x", "k8s.io"),
        ("x-k8s.io/x", "x-k8s.io"),
        ("cluster.x-k8s.io/x", "x-k8s.io"),
        ("security.istio.io/tlsMode", "istio.io"),
        ("credits.dev/job-id", "credits.dev"),
        ("a.credits.dev/x", "credits.dev"),
        ("team", None),
        ("kubernetes.io", None),  # no prefix: a plain name
        ("notkubernetes.io/x", None),
        ("credits.dev.example.org/x", None),
    ],
)
def test_reserved_label_domains_are_matched_as_domains(key: str, domain: str | None) -> None:
    assert reserved_label_domain(key) == domain


def test_every_bad_label_is_named_in_one_answer() -> None:
    labels = {"ok": "1", "bad key!": "1", "team": "bad value!", "kubernetes.io/x": "1"}
    with pytest.raises(ValidationError) as invalid:
        JobSpec(**SPEC, labels=labels)
    found = {(e["loc"], e["type"]) for e in invalid.value.errors()}
    assert found == {
        (("labels", "bad key!"), "label_key"),
        (("labels", "team"), "label_value"),
        (("labels", "kubernetes.io/x"), "reserved_label"),
    }


def test_simulation_labels_stay_allowed() -> None:
    spec = JobSpec(**SPEC, labels={"credits.dev/simulated-duration-s": "5"})
    assert spec.labels == {"credits.dev/simulated-duration-s": "5"}


def test_a_spec_stored_before_a_domain_was_reserved_still_loads() -> None:
    stored = JobSpec(**SPEC).model_dump() | {"labels": {"app.kubernetes.io/name": "x"}}
    text = JobSpec.model_construct(**stored).model_dump_json()
    assert stored_spec(text).labels == {"app.kubernetes.io/name": "x"}
    with pytest.raises(ValidationError):
        JobSpec.model_validate_json(text)
    broken = text.replace('"app.kubernetes.io/name"', '"bad key!"')
    with pytest.raises(ValidationError):
        stored_spec(broken)  # only the reservation is waived


# Prefixes that are not DNS-1123 subdomains: the API server refuses them at launch.
BAD_PREFIX_KEYS = ("team..x/owner", "team.-x/owner", "a-.b/owner")


@pytest.mark.parametrize(
    "key",
    [
        *BAD_PREFIX_KEYS,
        "Team.x/owner",  # a subdomain is lowercase
        "team.x-/owner",
        "/owner",
        "a/b/c",
        "team\n",  # '$' alone would let the newline through
        "a" * 254 + "/x",  # a prefix of at most 253 characters
        "x/" + "n" * 64,  # a name of at most 63
    ],
)
def test_a_label_key_kubernetes_would_refuse_is_refused(key: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        JobSpec(**SPEC, labels={key: "v"})
    found = [(e["loc"], e["type"]) for e in invalid.value.errors()]
    assert found == [(("labels", key), "label_key")]


@pytest.mark.parametrize(
    "key",
    ["team", "team.x/owner", "a-b.c/Owner_1", "0.a/x", "a" * 63 + "." + "b" * 189 + "/x"],
)
def test_label_keys_kubernetes_takes_are_accepted(key: str) -> None:
    assert JobSpec(**SPEC, labels={key: "v"}).labels == {key: "v"}


def test_a_label_value_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError) as invalid:
        JobSpec(**SPEC, labels={"team": "v\n"})
    assert [e["type"] for e in invalid.value.errors()] == ["label_value"]


def test_a_spec_stored_with_a_label_kubernetes_refuses_loads_and_the_label_stays_off() -> None:
    labels = {"team..x/owner": "v", "team": "v\n", "ok": "1"}
    text = JobSpec.model_construct(**(JobSpec(**SPEC).model_dump() | {"labels": labels}))
    spec = stored_spec(text.model_dump_json())
    assert spec.labels == labels
    launch = dataclasses.replace(request(1), labels=spec.labels)
    made = object_labels(launch, ManifestOptions(namespace="jobs", instance="credits"), {})
    assert made["ok"] == "1"
    assert not {"team..x/owner", "team"} & made.keys()
