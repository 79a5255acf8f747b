"""Credit codes the bureau accepts although their check characters do not conform to GB 32100.

A few unified social credit codes issued before 2016 are real, registered codes whose check
characters fail the standard's arithmetic (some in Xiamen, reported against other validators).
Every check of a subject's id or an operator's credit code refuses them as mistyped, so such a
firm could not be verified, consent or be registered. The bureau, having checked a code against
the registry, accepts it here (``sandbox codes accept``, ``POST /v1/accepted-codes``): from then
on exactly that code is accepted wherever a credit code is (a subject's id of either kind, a
template's dataset keyed by credit codes, an operator). Only a code shaped as one (18 characters
of the code's alphabet, a 6-digit division code) whose fault is a check character can be
accepted; a resident ID number never is.

The table is read here, in ``core``, because the checks of ``authz``, ``operators`` and
``sandbox`` all need it; it is written only through :mod:`authz.accepted_codes`, which records
each acceptance and withdrawal in the audit log. It is read only when a check has failed, so a
verification of a conforming code costs nothing more.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeGuard

from sqlalchemy import String, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Database, UTCDateTime, connection_of, table_of
from core.identifiers import RESIDENT_ID, credit_code_problem, is_valid_uscc, subject_id_problem, uscc_shaped
from core.prepared import Prepared

MAX_REASON = 500


class AcceptedCode(Base):
    """A non-conforming credit code the bureau accepts, until it withdraws the acceptance.

    One row per code: accepting a withdrawn code again makes the same row current (the audit log
    keeps each change). The row's id, not the code, names it in the audit log and in URLs, as a
    subject's id is kept out of both elsewhere.
    """

    __tablename__ = "accepted_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code: Mapped[str] = mapped_column(String(18), unique=True)
    reason: Mapped[str] = mapped_column(String(MAX_REASON))
    accepted_by: Mapped[str] = mapped_column(String(160))
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(160))
    withdraw_reason: Mapped[str | None] = mapped_column(String(MAX_REASON))


_CODES = table_of(AcceptedCode)
_CURRENT = Prepared(
    select(_CODES.c.id).where(_CODES.c.code == bindparam("code"), _CODES.c.withdrawn_at.is_(None))
)


def acceptable(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a code the bureau could accept: shaped as one, a check character wrong.

    An all-digit code may also be a right resident ID number; it can be accepted all the same
    (where either kind is taken it passes anyway, and where a credit code is required it is one).
    """
    return isinstance(value, str) and uscc_shaped(value) and not is_valid_uscc(value)


def is_accepted(db: Database, code: str) -> bool:
    """Whether ``code`` is accepted now (one indexed read, in ``db``'s transaction if it has one)."""
    return _CURRENT.first(connection_of(db), {"code": code}) is not None


def subject_problem(db: Database, value: object, kind: str | None = None) -> str | None:
    """:func:`core.identifiers.subject_id_problem`, with the bureau's accepted codes accepted.

    ``kind`` as there: a dataset keyed by resident ID numbers takes no credit code, accepted or not.
    """
    found = subject_id_problem(value, kind)
    if found is not None and kind != RESIDENT_ID and acceptable(value) and is_accepted(db, value):
        return None
    return found


def operator_code_problem(db: Database, value: object) -> str | None:
    """:func:`core.identifiers.credit_code_problem`, with the bureau's accepted codes accepted."""
    found = credit_code_problem(value)
    if found is not None and acceptable(value) and is_accepted(db, value):
        return None
    return found
