"""Health: whether each database answers a trivial query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from sandbox.data.stores import DatasetStale
from sandbox.runtime import Runtime


def _answers(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def _stale(runtime: Runtime) -> int:
    """How many datasets have a field whose stored column is not as the policy says: jobs reading
    that field are refused until the dataset is loaded again (a count; which ones is for staff, who
    see the catalog: the server's log and `sandbox init` name them)."""
    stale = 0
    for dataset in runtime.catalog.datasets.values():
        try:
            for engine in runtime.stores.engines:
                runtime.stores.require_current(engine, dataset, [f.name for f in dataset.fields])
        except DatasetStale:
            stale += 1
        except SQLAlchemyError:
            continue  # the store answered SELECT 1 just now; a failed read here is judged next time
    return stale


def check_health(runtime: Runtime) -> dict[str, Any]:
    """A health report; ``status`` is ``ok`` only when every database answers (a stale dataset
    leaves it ``ok``: every other dataset still serves)."""
    from sandbox import __version__

    control = _answers(runtime.engine)
    data = all(_answers(engine) for engine in runtime.stores.engines)
    return {
        "status": "ok" if control and data else "degraded",
        "control_db": "ok" if control else "unavailable",
        "data_db": "ok" if data else "unavailable",
        "stale_datasets": _stale(runtime) if data else 0,
        "policy_sha256": runtime.catalog.sha256,
        "version": __version__,
    }
