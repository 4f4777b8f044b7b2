"""Imports every package's tables so that `Base.metadata` is complete (Alembic, tests)."""

from jiesu.assessment import models as assessment_models
from jiesu.auth import models as auth_models
from jiesu.callbacks import models as callback_models
from jiesu.calls import models as call_models
from jiesu.delivery import models as delivery_models
from jiesu.imports import models as import_models
from jiesu.intel import models as intel_models
from jiesu.knowledge import models as knowledge_models
from jiesu.notices import models as notice_models
from jiesu.open311 import models as open311_models
from jiesu.ops import models as ops_models
from jiesu.org import models as org_models
from jiesu.taxonomy import models as taxonomy_models
from jiesu.tickets import models as ticket_models

__all__ = [
    "assessment_models",
    "auth_models",
    "call_models",
    "callback_models",
    "delivery_models",
    "import_models",
    "intel_models",
    "knowledge_models",
    "notice_models",
    "open311_models",
    "ops_models",
    "org_models",
    "taxonomy_models",
    "ticket_models",
]
