"""Free text that the console shows and the audit log keeps: names, purposes, licence numbers."""

from __future__ import annotations

import unicodedata

# Control characters (Cc: newlines, bells, escapes) and the line and paragraph separators break a
# line of a listing or a log into two; bidi controls reorder what a reviewer reads, and the
# invisible spaces hide characters. Other format characters stay allowed: the zero-width joiner
# and non-joiner that emoji and some scripts need, a soft hyphen pasted from a document.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_REFUSED = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi controls
    "\u200b\u2060\ufeff\u180e"  # zero-width space, word joiner, BOM, Mongolian vowel separator
)


def line_problem(value: object, most: int) -> str | None:
    """Why ``value`` is not a line of 1 to ``most`` characters (surrounding spaces aside), or ``None``.

    Every character is looked at, the surrounding ones too: ``str.strip`` would take a final
    newline or line separator away before the check, from a value that may be stored as given.
    """
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= most:
        return f"1-{most} characters"
    if any(char in _REFUSED or unicodedata.category(char) in _REFUSED_CATEGORIES for char in value):
        return "one line, without control characters, bidi controls or invisible spaces"
    return None
