"""Imports every package's tables so that `Base.metadata` is complete (Alembic, tests)."""

from jiesu.assessment import models as assessment_models
from jiesu.auth import models as auth_models
from jiesu.intel import models as intel_models
from jiesu.org import models as org_models
from jiesu.taxonomy import models as taxonomy_models
from jiesu.tickets import models as ticket_models

__all__ = [
    "assessment_models",
    "auth_models",
    "intel_models",
    "org_models",
    "taxonomy_models",
    "ticket_models",
]
