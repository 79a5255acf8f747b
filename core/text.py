"""Free text that the console shows and the audit log keeps: names, purposes, licence numbers."""

from __future__ import annotations

import unicodedata

# Control (Cc: newlines, bells, escapes), format (Cf: bidi overrides, zero-width characters) and
# the line and paragraph separators. In a name they reorder or hide what a reviewer reads, or
# break a line of a listing or a log into two.
_NOT_IN_A_LINE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def line_problem(value: object, most: int) -> str | None:
    """Why ``value`` is not a line of 1 to ``most`` characters (surrounding spaces aside), or ``None``."""
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= most:
        return f"1-{most} characters"
    if any(unicodedata.category(char) in _NOT_IN_A_LINE for char in value.strip()):
        return "one line, without control or invisible formatting characters"
    return None
