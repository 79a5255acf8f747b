"""Time-ordered ids: UUID version 7, unique, and in the order they were made."""

from __future__ import annotations

import os
import re
import time
import uuid

from core.ids import time_ordered_hex, time_ordered_id


def test_ids_are_version_7_uuids_in_the_usual_text_shape() -> None:
    made = time_ordered_id()
    parsed = uuid.UUID(made)
    assert str(parsed) == made and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert re.fullmatch(r"[0-9a-f]{32}", time_ordered_hex())
    assert uuid.UUID(hex=time_ordered_hex()).version == 7


def test_ids_made_one_after_another_sort_in_that_order_and_never_repeat() -> None:
    made = [time_ordered_id() for _ in range(20_000)]  # many in each millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    hexes = [time_ordered_hex() for _ in range(5_000)]
    assert hexes == sorted(hexes) and len(set(hexes)) == len(hexes)


def test_the_prefix_is_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(time_ordered_id())
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after


def test_processes_forked_from_one_parent_make_different_ids() -> None:
    """Gunicorn forks its workers: each must draw its own random bits, not the parent's sequence."""
    time_ordered_id()  # the parent's generator is in use before the fork
    read, write = os.pipe()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write, (" ".join(time_ordered_id() for _ in range(50)) + "\n").encode())
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(write)
    with os.fdopen(read) as lines:
        made = [line.split() for line in lines]
    assert len(made) == 2 and all(len(ids) == 50 for ids in made)
    tails = [{each[-17:] for each in ids} for ids in made]  # the random part, without the time
    assert not tails[0] & tails[1]
