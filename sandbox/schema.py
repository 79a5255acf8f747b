"""Imports every model module so ``Base.metadata`` holds the whole control schema.

Alembic's environment and the tests import this one module instead of knowing every package.
"""

from __future__ import annotations

import audit.models
import authz.consent
import authz.contract_models
import authz.models
import core.accepted_codes
import core.keyring
import operators.models
import sandbox.compute.models
import sandbox.engine.models
import sandbox.models
from core.db import Base

MODEL_MODULES = (
    audit.models,
    core.keyring,
    core.accepted_codes,
    authz.models,
    authz.contract_models,
    authz.consent,
    operators.models,
    sandbox.models,
    sandbox.engine.models,
    sandbox.compute.models,
)
metadata = Base.metadata
