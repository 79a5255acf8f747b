"""The console's log-integrity panel: the whole log verified against its checkpoints, cached.

This is the offline verifier (``audit.verify_db``) run inside the service, against the checkpoints
in the database and in the append-only file beside it, with the service's published keys. An
auditor who does not trust the service runs ``sandbox audit verify`` with pinned keys; the panel
is the everyday signal. Verifying reads every event, so a result is reused for a short while.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.sources import checkpoints_from_file, keys_from_jwks
from audit.verify_db import verify_database
from core import keyring
from sandbox.runtime import Runtime

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Integrity:
    """The verdict and when it was reached."""

    intact: bool
    events: int
    verified_size: int
    checkpoints_verified: int
    root_hash: str
    first_failing_seq: int | None
    reason: str | None
    checked_at: datetime


_lock = threading.Lock()
_cache: dict[str, tuple[float, Integrity]] = {}


def _published_keys(runtime: Runtime) -> list[Ed25519PublicKey]:
    with runtime.sessions() as session:
        return keys_from_jwks(keyring.published_jwks(session))


def check(runtime: Runtime, *, fresh: bool = False) -> Integrity:
    """The log's integrity, verified now or within the last ``CACHE_SECONDS``."""
    url = runtime.settings.database_url
    with _lock:
        cached = _cache.get(url)
        if cached is not None and not fresh and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        extra = (
            checkpoints_from_file(runtime.settings.checkpoints_file)
            if runtime.settings.checkpoints_file.exists()
            else []
        )
        # One process: a web worker should not fork a pool per page view.
        report = verify_database(url, extra, _published_keys(runtime), workers=1)
        first = report.first_failure
        verdict = Integrity(
            intact=report.intact,
            events=report.events,
            verified_size=report.verified_size,
            checkpoints_verified=report.checkpoints_verified,
            root_hash=report.root_hash,
            first_failing_seq=first.seq if first else None,
            reason=first.reason.value if first else None,
            checked_at=runtime.clock(),
        )
        _cache[url] = (time.monotonic(), verdict)
        return verdict
