"""Imports every domain's models so that the metadata is complete (Alembic, tests)."""

from credits.audit import models as audit_models
from credits.datasets import models as datasets_models
from credits.db import Base
from credits.grants import models as grants_models
from credits.identity import models as identity_models
from credits.jobs import models as jobs_models
from credits.jobs import passes as jobs_passes
from credits.labelling import models as labelling_models
from credits.ledger import models as ledger_models
from credits.metering import models as metering_models
from credits.notifications import models as notifications_models
from credits.pool import models as pool_models
from credits.transparency import models as transparency_models

metadata = Base.metadata

__all__ = [
    "audit_models",
    "datasets_models",
    "grants_models",
    "identity_models",
    "jobs_models",
    "jobs_passes",
    "labelling_models",
    "ledger_models",
    "metadata",
    "metering_models",
    "notifications_models",
    "pool_models",
    "transparency_models",
]
