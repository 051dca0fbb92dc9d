"""Container image references and the installation's allow-list of registries.

A reference is read the way a container runtime reads it: the part before the
first ``/`` names a registry only when it has a ``.`` or a ``:`` or is
``localhost``; otherwise the image is on Docker Hub (``docker.io``), and a
name of one component is an official image under ``library/``. So
``ubuntu:22.04`` is ``docker.io/library/ubuntu``, ``localhost:5000/x`` is
``x`` on registry ``localhost:5000``, and ``nvcr.io/nvidia/pytorch:24.10-py3``
is ``nvidia/pytorch`` on ``nvcr.io``.

An allow-list entry is a registry (``ghcr.io``), or a registry and a
repository prefix (``registry.example.org/team``), which allows that
repository and those under it (``team/x``, not ``teamwork/x``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# Names Docker Hub also answers to; a reference written with them is Docker Hub's.
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_REGISTRY_RE = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class ImageReference:
    """``registry/repository[:tag][@digest]`` with the registry always spelt out."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryRule:
    """One allow-list entry: a registry, and optionally a repository prefix on it."""

    registry: str
    prefix: str = ""

    def allows(self, image: ImageReference) -> bool:
        if image.registry != self.registry:
            return False
        if not self.prefix:
            return True
        return image.repository == self.prefix or image.repository.startswith(self.prefix + "/")

    def __str__(self) -> str:
        return f"{self.registry}/{self.prefix}" if self.prefix else self.registry


def _normal_registry(host: str) -> str:
    host = host.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def _looks_like_registry(component: str) -> bool:
    # Repository components are lowercase, so an uppercase letter marks a host too.
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component != component.lower()
    )


def parse_image(reference: str) -> ImageReference:
    """The reference with its registry made explicit; raises ValueError when it is not one."""
    rest, at, digest = reference.partition("@")
    if at and not _DIGEST_RE.match(digest):
        raise ValueError(f"{reference!r} has a malformed digest")
    first, slash, remainder = rest.partition("/")
    if slash and _looks_like_registry(first):
        if not _REGISTRY_RE.match(first):
            raise ValueError(f"{first!r} is not a registry host")
        registry, path = _normal_registry(first), remainder
    else:
        registry, path = DOCKER_HUB, rest
    repository, colon, tag = path.partition(":")
    if colon and not _TAG_RE.match(tag):
        raise ValueError(f"{reference!r} has a malformed tag")
    if not _REPOSITORY_RE.match(repository) or len(repository) > _MAX_NAME:
        raise ValueError(f"{reference!r} is not an image reference")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return ImageReference(registry, repository, tag or None, digest or None)


def parse_registry_rule(entry: str) -> RegistryRule:
    """``ghcr.io`` or ``registry.example.org/team``; raises ValueError for anything else."""
    host, _, prefix = entry.strip().partition("/")
    prefix = prefix.rstrip("/")
    if not _REGISTRY_RE.match(host) or (prefix and not _REPOSITORY_RE.match(prefix)):
        raise ValueError(f"{entry.strip()!r} is not a registry, nor a registry/repository prefix")
    return RegistryRule(_normal_registry(host), prefix)


def parse_registries(text: str) -> tuple[RegistryRule, ...]:
    """The comma-separated allow-list of ``CREDITS_JOB_IMAGE_REGISTRIES``; () allows any."""
    return tuple(parse_registry_rule(part) for part in text.split(",") if part.strip())


def refusal(image: str, rules: Iterable[RegistryRule]) -> str | None:
    """Why the image may not run under these rules; None when it may (no rules: any)."""
    allowed = tuple(rules)
    if not allowed:
        return None
    try:
        reference = parse_image(image)
    except ValueError as error:
        return str(error)
    if any(rule.allows(reference) for rule in allowed):
        return None
    where = f"{reference.registry}/{reference.repository}"
    return f"image {where} is not from an allowed registry ({', '.join(map(str, allowed))})"
