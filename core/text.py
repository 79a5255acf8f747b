"""Free text that the console shows and the audit log keeps: names, purposes and licence numbers
(one line each), and the notes people write (reasons and comments, which may run to several lines)."""

from __future__ import annotations

import unicodedata

from core.errors import Invalid

# Control characters (Cc: newlines, bells, escapes) and the line and paragraph separators break a
# line of a listing or a log into two; bidi controls reorder what a reviewer reads, and the
# invisible spaces hide characters. Other format characters stay allowed: the zero-width joiner
# and non-joiner that emoji and some scripts need, a soft hyphen pasted from a document.
# A lone surrogate (Cs) is no text at all: what a command line makes of bytes that are not UTF-8,
# which no database driver can store.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_REFUSED = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi controls
    "\u200b\u2060\ufeff\u180e"  # zero-width space, word joiner, BOM, Mongolian vowel separator
)


def _refused(char: str) -> bool:
    return char in _REFUSED or unicodedata.category(char) in _REFUSED_CATEGORIES


def line_problem(value: object, most: int) -> str | None:
    """Why ``value`` is not a line of 1 to ``most`` characters (surrounding spaces aside), or ``None``.

    Every character is looked at, the surrounding ones too: ``str.strip`` would take a final
    newline or line separator away before the check, from a value that may be stored as given.
    """
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= most:
        return f"1-{most} characters"
    if any(_refused(char) for char in value):
        return "one line, without control characters, bidi controls or invisible spaces"
    return None


# A note keeps its line breaks and tabs; a browser sends a textarea's line breaks as CRLF, and a
# note is kept with LF alone, so the same words typed in the console or sent to the API are equal.
_NOTE_ALLOWED = frozenset("\n\t")


def note_text(value: object, most: int, *, required: bool) -> tuple[str | None, str | None]:
    """A note (a reason, a comment) as it is kept, and why it cannot be, if it cannot.

    Kept: surrounding spaces stripped, line breaks as LF; empty is ``None`` where a note is
    optional. Refused: not text, more than ``most`` characters, and the characters
    :func:`line_problem` refuses other than line breaks and tabs (an escape sequence would recolour
    or rewrite an auditor's terminal; a bidi control reorders what a reviewer reads).
    """
    if value is None and not required:
        return None, None
    need = f"1-{most} characters" if required else f"at most {most} characters"
    if not isinstance(value, str):
        return None, need
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > most or (required and not text):
        return None, need
    if any(_refused(char) for char in text if char not in _NOTE_ALLOWED):
        return None, "lines of text, without other control characters, bidi controls or invisible spaces"
    return text or None, None


def required_note(value: object, most: int, *, field: str = "reason") -> str:
    """:func:`note_text` for a note that must be given (an admin's reason): the note as kept, or
    ``invalid`` saying why it cannot be."""
    text, need = note_text(value, most, required=True)
    if text is None:
        raise Invalid(f"the {field} is not acceptable", details=[{"field": field, "message": need}])
    return text


def is_utf8_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8: not so with a lone surrogate, which JSON's ``\\ud800``
    and a command line's bytes that are not UTF-8 both make, and no database driver can store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
