"""The bureau accepts a non-conforming credit code, or withdraws its acceptance; each is audited.

What an acceptance does, and why it is needed, is in :mod:`core.accepted_codes`, which holds the
table and the checks that read it.
"""

from __future__ import annotations

import unicodedata
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Target, record_event
from core.accepted_codes import MAX_REASON, AcceptedCode, acceptable
from core.clock import Clock, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.identifiers import is_valid_uscc, uscc_shaped
from core.text import is_utf8_text, note_text, required_note

NOT_ACCEPTED = "no such accepted code"
NAMES_CODE = "names the code itself (or the firm's part of it): say how it was checked"
# The firm's own part of a credit code: its organization code (positions 9-17, GB 32100). The
# first eight characters (registering authority, division) are shared by every firm of a district.
_FIRM_PART = slice(8, 17)


def names_code(reason: str, code: str) -> bool:
    """Whether ``reason`` spells ``code``'s firm part, however written: any case, full-width
    characters (NFKC), spaces, hyphens or other characters between its letters and digits.

    A reason is kept in the permanent audit log, which a subject's id stays out of (see _record).
    """
    letters = "".join(
        ch for ch in unicodedata.normalize("NFKC", reason).upper() if ch.isascii() and ch.isalnum()
    )
    return code[_FIRM_PART].upper() in letters


def actor_label(actor: Actor) -> str:
    """Who accepted or withdrew, as the row keeps it: ``admin:<account id>``, ``system:cli``."""
    return f"{actor.kind.value}:{actor.id}" if actor.id else actor.kind.value


def _code_problem(code: object) -> str | None:
    if acceptable(code):
        return None
    if isinstance(code, str) and uscc_shaped(code) and is_valid_uscc(code):
        return "its check characters are right: the code is accepted already, as every conforming code is"
    return "an 18-character unified social credit code"


def accept_code(
    session: Session,
    *,
    code: object,
    reason: object,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> AcceptedCode:
    """Accept ``code``, which must be shaped as a credit code and fail its check; audited.

    A code accepted now is a ``409``; one whose acceptance was withdrawn is accepted again (the
    same row, the new reason).
    """
    problems: list[dict[str, str]] = []
    if (found := _code_problem(code)) is not None:
        problems.append({"field": "code", "message": found})
    text, need = note_text(reason, MAX_REASON, required=True)
    if need is not None:
        problems.append({"field": "reason", "message": need})
    elif text is not None and isinstance(code, str) and names_code(text, code):
        problems.append({"field": "reason", "message": NAMES_CODE})
    if problems or not acceptable(code) or text is None:  # the last two: for the type checker
        raise Invalid(f"{len(problems)} problem(s) with the accepted code", details=problems)
    row = session.execute(
        select(AcceptedCode).where(AcceptedCode.code == code).with_for_update()
    ).scalar_one_or_none()
    now = clock()
    if row is None:
        row = AcceptedCode(id=str(uuid.uuid4()), code=code)
        session.add(row)
    elif row.withdrawn_at is None:
        raise Conflict(
            "the code is accepted already", details=[{"field": "code", "message": f"see {row.id}"}]
        )
    row.reason, row.accepted_by, row.accepted_at = text, actor_label(actor), now
    row.withdrawn_at = row.withdrawn_by = row.withdraw_reason = None
    try:
        session.flush()
    except IntegrityError as exc:
        if not any(name in str(exc.orig) for name in ("accepted_codes.code", "uq_accepted_codes_code")):
            raise  # not the race below (SQLite's and PostgreSQL's words for it): a real error
        # Accepted by another request since the read above (PostgreSQL; SQLite writers take turns).
        raise Conflict("the code is accepted already") from exc
    _record(session, AuditAction.CODE_ACCEPT, row, text, actor, request_id, clock)
    return row


def withdraw_code(
    session: Session,
    code_id: str,
    *,
    reason: object,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> AcceptedCode:
    """Withdraw an acceptance: the code is refused as mistyped again from the next check on; audited."""
    text = required_note(reason, MAX_REASON)
    if not is_utf8_text(code_id):  # from a command line, bytes that are not UTF-8: no row has that id
        raise NotFound(NOT_ACCEPTED)
    row = session.execute(
        select(AcceptedCode).where(AcceptedCode.id == code_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(NOT_ACCEPTED)
    if names_code(text, row.code):
        raise Invalid("the reason names the code", details=[{"field": "reason", "message": NAMES_CODE}])
    if row.withdrawn_at is not None:
        raise Conflict("the acceptance is withdrawn already")
    row.withdrawn_at, row.withdrawn_by, row.withdraw_reason = clock(), actor_label(actor), text
    session.flush()
    _record(session, AuditAction.CODE_WITHDRAW, row, text, actor, request_id, clock)
    return row


def list_codes(session: Session) -> list[AcceptedCode]:
    """Every code accepted, withdrawn ones too (they are history), the newest acceptance first."""
    query = select(AcceptedCode).order_by(AcceptedCode.accepted_at.desc(), AcceptedCode.id)
    return list(session.execute(query).scalars())


def _record(
    session: Session,
    action: AuditAction,
    row: AcceptedCode,
    reason: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock,
) -> None:
    record_event(
        session,
        action=action,
        actor=actor,
        target=Target("accepted_code", row.id),
        request_id=request_id,
        # The code itself stays out of the permanent log, as a subject's id does (it may be a
        # subject's); the row's id names it, and the row keeps the code.
        details={"reason": reason},
        clock=clock,
    )
