"""The jobs world (``tests/jobs/jobs_world.py``: a funded project, a flavour, the real
scheduler and reconciler) on the Kubernetes executor and the API emulator, for tests
that take jobs through the whole platform.

The emulator's virtual clock is set to the jobs world's start, and the world's clock
reads the emulator's, so the two never drift apart.
"""

from __future__ import annotations

from datetime import datetime

from jobs_world import START, Clock, JobsWorld, build_jobs_world
from k8s_controllers import EPOCH
from k8s_kube import Kube
from sqlalchemy.orm import Session, sessionmaker


class EmulatorClock(Clock):
    """The jobs world's clock, reading the emulator's virtual time."""

    def __init__(self, kube: Kube) -> None:
        super().__init__()
        self.kube = kube

    def __call__(self) -> datetime:
        return self.kube.now()


def kube_world(factory: sessionmaker[Session], kube: Kube) -> JobsWorld:
    """A jobs world whose executor is ``kube``'s and whose clock is the emulator's."""
    kube.emu.clock.now = (START - EPOCH).total_seconds()
    built = build_jobs_world(factory, clock=EmulatorClock(kube))
    built.executor = kube.executor  # type: ignore[assignment]
    return built
