"""Problems a job request can run into; each maps to one problem type in the API."""

from __future__ import annotations

from credits.errors import Conflict, CreditsError, InvalidInput, NotFound


class PoolUnavailable(CreditsError):
    """The executor could not say what the pool holds (Kubernetes unreachable), which a
    submission is checked against; nothing was held."""

    status = 503
    slug = "pool-unavailable"
    title = "The GPU pool cannot be read now"


class JobNotFound(NotFound):
    slug = "job-not-found"
    title = "Job not found"


class UnknownFlavour(InvalidInput):
    slug = "unknown-flavour"
    title = "Unknown GPU flavour"


class JobNeverFits(InvalidInput):
    """No node, or gang of whole nodes, of the flavour could ever hold the request."""

    slug = "job-never-fits"
    title = "The job can never fit the pool"


class RuntimeOverCap(InvalidInput):
    slug = "runtime-over-cap"
    title = "Max runtime over the platform's cap"


class CheckpointGraceOverCap(InvalidInput):
    slug = "checkpoint-grace-over-cap"
    title = "Checkpoint grace over the flavour's cap"


class CheckpointingUnavailable(InvalidInput):
    """The job asks to be checkpointable where the executor has nowhere to keep checkpoints."""

    slug = "checkpointing-unavailable"
    title = "Checkpointable jobs are not available here"


class ImageNotAllowed(InvalidInput):
    """The image is not from a registry on the installation's allow-list."""

    slug = "image-not-allowed"
    title = "Image registry not allowed"


class ProjectCannotSubmit(Conflict):
    slug = "project-cannot-submit"
    title = "The project cannot submit jobs"


class JobStateConflict(Conflict):
    slug = "job-state-conflict"
    title = "The job is not in a state that allows this"
