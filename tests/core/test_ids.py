"""Time-ordered ids: UUID version 7, unique, and in the order they were made."""

from __future__ import annotations

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
