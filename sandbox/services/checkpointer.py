"""The checkpointer: signs a checkpoint every N events or T seconds, beside the server.

``sandbox serve`` starts it as a separate process (spawned, so it shares nothing with the
gunicorn master or its workers). Several checkpointers on one database are safe: signing is
serialized under the audit head lock and a size is signed once.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

from sqlalchemy.exc import SQLAlchemyError

from audit.checkpoints import CheckpointSigner, checkpoint_due, create_checkpoint
from audit.tree import LogCorrupted, LogTree
from core.clock import utcnow
from core.config import Settings
from core.db import create_control_engine, session_factory
from core.errors import SandboxError

log = logging.getLogger("sandbox.checkpointer")


def run(settings: Settings, stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
    """Check every ``poll_seconds`` whether a checkpoint is due and sign it, until ``stop`` is set."""
    engine = create_control_engine(settings.database_url)
    sessions = session_factory(engine)
    tree = LogTree()
    signer = CheckpointSigner.for_settings(settings)
    try:
        while not stop.wait(poll_seconds):
            try:
                with sessions() as session:
                    due = checkpoint_due(
                        session,
                        every_events=settings.checkpoint_every_events,
                        every_seconds=settings.checkpoint_every_seconds,
                        now=utcnow(),
                    )
                if due:
                    made, _ = create_checkpoint(sessions, tree, signer)
                    log.info("signed checkpoint of size %s", made["tree_size"])
            except (SQLAlchemyError, SandboxError, LogCorrupted, OSError) as exc:
                # Keep going: a locked or briefly unreachable database is not a reason to stop signing.
                log.warning("checkpoint not signed: %s: %s", exc.__class__.__name__, exc)
    finally:
        engine.dispose()


def _main(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="[checkpointer] %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(settings, stop)


def start_process(settings: Settings) -> BaseProcess:
    """Start the checkpointer in its own (spawned, daemonic) process."""
    process = multiprocessing.get_context("spawn").Process(
        target=_main, args=(settings,), name="sandbox-checkpointer", daemon=True
    )
    process.start()
    return process
