"""Health: whether each database answers a trivial query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from sandbox.runtime import Runtime


def _answers(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def check_health(runtime: Runtime) -> dict[str, Any]:
    """A health report; ``status`` is ``ok`` only when every database answers."""
    from sandbox import __version__

    control = _answers(runtime.engine)
    data = all(_answers(engine) for engine in runtime.stores.engines)
    return {
        "status": "ok" if control and data else "degraded",
        "control_db": "ok" if control else "unavailable",
        "data_db": "ok" if data else "unavailable",
        "policy_sha256": runtime.catalog.sha256,
        "version": __version__,
    }
