"""Subjects' consent to checks about themselves, and the record of every check made about them.

A subject (a firm by its unified social credit code, a person by resident ID number) consents to
one operator running named verification templates (or ``compute:<program id>``, one compute
program scoped to the subject) about it, for a purpose, for a while. A
template that requires consent runs only when :func:`require_consent` finds such a consent, valid
at that moment. ``subject_accesses`` is what the subject reads back: who checked it, when, with
which template, under which authorization; never the answer nor the inputs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    bindparam,
    column,
    insert,
    select,
    table,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from audit import Actor, AuditAction, Outcome, Target, record_event
from authz.errors import ConsentInvalid, ConsentRequired, InvalidTransition
from catalog import Catalog
from core.accepted_codes import subject_problem
from core.clock import Clock, rfc3339, utcnow
from core.db import Base, Database, UTCDateTime, connection_of, table_of, writing_connection
from core.errors import Invalid, NotFound
from core.prepared import Prepared
from core.text import line_problem

MAX_VALID_DAYS = 366
MAX_PURPOSE = 500
MAX_PAGE = 500
MAX_TEMPLATES = 100  # a longer list is refused whole rather than answered problem by problem
CONSENT_NOT_FOUND = "no such consent"

# The operators table, by name only: authz sits beside operators and must not import it.
_operators = table("operators", column("id"), column("name"))
# A consent may also cover one compute program, as ``compute:<program id>`` (a subject-scoped
# job); the programs table by name only, since authz sits below the sandbox that owns it.
COMPUTE_PREFIX = "compute:"
_programs = table("programs", column("id"), column("operator_id"))


class Consent(Base):
    """A subject's consent to one operator running the listed templates about it, until a date."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint("valid_until > granted_at", name="validity_positive"),
        Index("ix_consents_subject_operator", "subject_id", "operator_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(18))
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(500))
    templates: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.granted_at <= now < self.valid_until else "expired"

    def refusal(self, *, subject_id: str, operator_id: str, template: str, now: datetime) -> str | None:
        """Why this consent does not allow the check, or ``None`` when it does."""
        if self.subject_id != subject_id:
            return "the consent is another subject's"
        if self.operator_id != operator_id:
            return "the consent is for another operator"
        if self.revoked_at is not None:
            return "the consent is revoked"
        if not self.granted_at <= now < self.valid_until:
            return "the consent is expired"
        if template not in self.templates:
            return "the consent does not cover the template"
        return None


class SubjectAccess(Base):
    """One check made about a subject, as the subject sees it."""

    __tablename__ = "subject_accesses"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'failed')", name="outcome_known"),
        # Serves "my accesses, newest first" and its id cursor with one index.
        Index("ix_subject_accesses_subject_id", "subject_id", "id"),
    )

    # An increasing id gives a stable newest-first order and a cursor that never skips a row,
    # which timestamps (equal within a microsecond, or from a held test clock) do not.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    subject_id: Mapped[str] = mapped_column(String(18))
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    operator_name: Mapped[str] = mapped_column(String(200))  # as it was at the time of the check
    template: Mapped[str] = mapped_column(String(64))
    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"))
    job_id: Mapped[str | None] = mapped_column(String(36))
    accessed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))


def grant_consent(
    session: Session,
    catalog: Catalog,
    *,
    subject_id: str,
    operator_id: object,
    purpose: object,
    templates: object,
    valid_days: object,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Consent:
    """Record a subject's consent; :class:`ConsentInvalid` lists every problem with the request."""
    problems = _grant_problems(session, catalog, subject_id, operator_id, purpose, templates, valid_days)
    if problems:
        raise ConsentInvalid(f"{len(problems)} problem(s) with the consent", details=problems)
    now = clock()
    consent = Consent(
        id=str(uuid.uuid4()),
        subject_id=subject_id,
        operator_id=cast(str, operator_id),
        purpose=cast(str, purpose).strip(),
        templates=list(cast(list[str], templates)),
        granted_at=now,
        valid_until=now + timedelta(days=cast(int, valid_days)),
    )
    session.add(consent)
    session.flush()
    _record(
        session, AuditAction.CONSENT_GRANT, consent, actor, request_id, clock, rfc3339(consent.valid_until)
    )
    return consent


def _grant_problems(
    session: Session,
    catalog: Catalog,
    subject_id: str,
    operator_id: object,
    purpose: object,
    templates: object,
    valid_days: object,
) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if (found := subject_problem(session, subject_id)) is not None:
        out.append({"field": "subject_id", "message": found})
    if not isinstance(operator_id, str) or not _operator_name(session, operator_id):
        out.append({"field": "operator_id", "message": "no such operator"})
    if (found := line_problem(purpose, MAX_PURPOSE)) is not None:
        out.append({"field": "purpose", "message": found})
    if not isinstance(templates, list) or not 1 <= len(templates) <= MAX_TEMPLATES:
        out.append({"field": "templates", "message": f"a list of 1-{MAX_TEMPLATES} template names"})
    else:
        for index, name in enumerate(templates):
            if isinstance(name, str) and name.startswith(COMPUTE_PREFIX):
                known = _operator_program(session, name.removeprefix(COMPUTE_PREFIX), operator_id)
                unknown = "no such program of the operator"
            else:
                known = isinstance(name, str) and name in catalog.templates
                unknown = "no such verification template"
            if not known:
                out.append({"field": f"templates[{index}]", "message": unknown})
            elif templates.index(name) != index:
                out.append({"field": f"templates[{index}]", "message": f"{name} is listed twice"})
    if (
        isinstance(valid_days, bool)
        or not isinstance(valid_days, int)
        or not 1 <= valid_days <= MAX_VALID_DAYS
    ):
        out.append({"field": "valid_days", "message": f"an integer from 1 to {MAX_VALID_DAYS}"})
    return out


def revoke_consent(
    session: Session,
    consent_id: str,
    *,
    subject_id: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Consent:
    """Withdraw the subject's own consent; checks that need it are refused from now on."""
    query = (
        select(Consent)
        .where(Consent.id == consent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    consent = session.execute(query).scalar_one_or_none()
    if consent is None or consent.subject_id != subject_id:
        raise NotFound(CONSENT_NOT_FOUND)
    if consent.revoked_at is not None:
        raise InvalidTransition("the consent is already revoked")
    consent.revoked_at = clock()
    session.flush()
    _record(
        session, AuditAction.CONSENT_REVOKE, consent, actor, request_id, clock, rfc3339(consent.valid_until)
    )
    return consent


def list_consents(session: Session, subject_id: str) -> list[Consent]:
    """The subject's consents, newest first (revoked and expired ones too: they are history)."""
    query = select(Consent).where(Consent.subject_id == subject_id)
    return list(session.execute(query.order_by(Consent.granted_at.desc(), Consent.id)).scalars())


@dataclass(frozen=True)
class ConsentGrant:
    """The consent a check runs under."""

    id: str


_CONSENTS = table_of(Consent)
# Built once (a verification's hot path): the subject's consents to the operator valid at ``now``.
_VALID_CONSENTS = Prepared(
    select(_CONSENTS.c.id, _CONSENTS.c.templates)
    .where(
        _CONSENTS.c.subject_id == bindparam("subject_id"),
        _CONSENTS.c.operator_id == bindparam("operator_id"),
        _CONSENTS.c.revoked_at.is_(None),
        _CONSENTS.c.granted_at <= bindparam("now", type_=_CONSENTS.c.granted_at.type),
        _CONSENTS.c.valid_until > bindparam("now", type_=_CONSENTS.c.valid_until.type),
    )
    .order_by(_CONSENTS.c.granted_at.desc(), _CONSENTS.c.id)
)
_CONSENT_FIELDS = tuple(column.name for column in _CONSENTS.columns)
_CONSENT_BY_ID = Prepared(select(_CONSENTS).where(_CONSENTS.c.id == bindparam("consent_id")))
_STILL_VALID = Prepared(
    select(_CONSENTS.c.id)
    .where(
        _CONSENTS.c.id == bindparam("consent_id"),
        _CONSENTS.c.revoked_at.is_(None),
        _CONSENTS.c.valid_until > bindparam("now", type_=_CONSENTS.c.valid_until.type),
    )
    .with_for_update(read=True)  # PostgreSQL: a revocation in flight commits first, or waits
)
_INSERT_ACCESS = Prepared(
    insert(table_of(SubjectAccess)),
    column_keys=[
        "subject_id", "operator_id", "operator_name", "template", "authorization_id", "job_id", "accessed_at",
        "outcome",
    ],
)  # fmt: skip


def require_consent(
    session: Database,
    *,
    subject_id: str,
    operator_id: str,
    template: str,
    consent_id: str | None,
    now: datetime,
) -> ConsentGrant:
    """The consent that allows ``operator_id`` to run ``template`` about ``subject_id`` at ``now``.

    With ``consent_id``, that consent must allow it; without, any of the subject's consents may.
    Otherwise :class:`ConsentRequired`, with one message whatever the reason.
    """
    if consent_id is not None:
        row = _CONSENT_BY_ID.first(connection_of(session), {"consent_id": consent_id})
        if row is None:
            raise ConsentRequired("no such consent")
        consent = Consent(**dict(zip(_CONSENT_FIELDS, row, strict=True)))  # not added to any session
        reason = consent.refusal(subject_id=subject_id, operator_id=operator_id, template=template, now=now)
        if reason is not None:
            raise ConsentRequired(reason)
        return ConsentGrant(id=consent.id)
    binds = {"subject_id": subject_id, "operator_id": operator_id, "now": now}
    # Template coverage is checked here, not in SQL: JSON containment differs between backends.
    for found_id, templates in _VALID_CONSENTS.rows(connection_of(session), binds):
        if template in templates:
            return ConsentGrant(id=found_id)
    raise ConsentRequired("no consent of the subject covers the template")


def require_still_valid(session: Database, grant: ConsentGrant, *, now: datetime) -> None:
    """Inside the write that releases an answer: the consent found by :func:`require_consent`
    (read before, outside that transaction) is not revoked or expired meanwhile."""
    if _STILL_VALID.first(writing_connection(session), {"consent_id": grant.id, "now": now}) is None:
        raise ConsentRequired("the consent was revoked")


def record_access(
    session: Database,
    *,
    subject_id: str,
    operator_id: str,
    template: str,
    authorization_id: str,
    job_id: str | None,
    outcome: Outcome,
    clock: Clock = utcnow,
    operator_name: str | None = None,
) -> None:
    """Note a check about ``subject_id``, in the caller's (the verification's) transaction.

    ``operator_name`` is the operator's name as the caller read it this request (it spares a
    read); otherwise it is read here.
    """
    conn = writing_connection(session)  # the rows it refers to may be pending in a session
    if operator_name is None:
        operator_name = _operator_name(conn, operator_id)
        if operator_name is None:
            raise NotFound("no such operator")
    row = {
        "subject_id": subject_id,
        "operator_id": operator_id,
        "operator_name": operator_name,
        "template": template,
        "authorization_id": authorization_id,
        "job_id": job_id,
        "accessed_at": clock(),
        "outcome": outcome.value,
    }
    _INSERT_ACCESS.execute(conn, row)


def list_accesses(
    session: Session, subject_id: str, *, limit: int = 50, before: int | None = None
) -> list[SubjectAccess]:
    """Checks about ``subject_id``, newest first; ``before`` is the id of the last one already seen."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit out of range", details=[{"field": "limit", "message": f"from 1 to {MAX_PAGE}"}])
    query = select(SubjectAccess).where(SubjectAccess.subject_id == subject_id)
    if before is not None:
        query = query.where(SubjectAccess.id < before)
    return list(session.execute(query.order_by(SubjectAccess.id.desc()).limit(limit)).scalars())


def _operator_program(session: Session, program_id: str, operator_id: object) -> bool:
    """Whether ``program_id`` is a program of ``operator_id``."""
    if not isinstance(operator_id, str) or len(program_id) > 36:
        return False
    query = select(_programs.c.id).where(_programs.c.id == program_id, _programs.c.operator_id == operator_id)
    return session.execute(query).first() is not None


def _operator_name(db: Database, operator_id: str) -> str | None:
    name = connection_of(db).execute(select(_operators.c.name).where(_operators.c.id == operator_id)).scalar()
    return None if name is None else str(name)


def _record(
    session: Session,
    action: AuditAction,
    consent: Consent,
    actor: Actor,
    request_id: str | None,
    clock: Clock,
    valid_until: str,
) -> None:
    record_event(
        session,
        action=action,
        actor=actor,
        target=Target("consent", consent.id),
        request_id=request_id,
        # No subject id here: the log is permanent, and the actor (the subject's account) names them.
        details={
            "operator_id": consent.operator_id,
            "templates": consent.templates,
            "valid_until": valid_until,
        },
        clock=clock,
    )
