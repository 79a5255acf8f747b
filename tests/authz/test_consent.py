"""Consent: grant, revoke, and the check before a consent-requiring template; the access record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from audit import Actor, ActorKind, AuditAction, AuditEvent, Outcome
from authz.consent import (
    Consent,
    grant_consent,
    list_accesses,
    record_access,
    require_consent,
    revoke_consent,
)
from authz.errors import ConsentInvalid, ConsentRequired, InvalidTransition
from core.db import transaction
from core.errors import Invalid, NotFound
from sandbox.runtime import Runtime
from tests.factories import NOW, make_consent, make_contract, make_operator

FIRM = "913701023C5XXXX13C"
OTHER_FIRM = "913701023C5YYYY271"
SUBJECT = Actor(ActorKind.SUBJECT, "account-firm")


def _operators(runtime: Runtime, count: int = 1) -> list[str]:
    with transaction(runtime.sessions) as session:
        return [make_operator(session, name=f"运营方{index}").id for index in range(count)]


def _grant(runtime: Runtime, operator_id: str, **overrides: Any) -> Consent:
    args: dict[str, Any] = {
        "subject_id": FIRM,
        "operator_id": operator_id,
        "purpose": "申请经营贷款",
        "templates": ["tax_paid_at_least", "no_social_insurance_arrears"],
        "valid_days": 30,
    }
    args.update(overrides)
    with transaction(runtime.sessions) as session:
        return grant_consent(
            session, runtime.catalog, actor=SUBJECT, request_id="req-grant", clock=lambda: NOW, **args
        )


def _require(runtime: Runtime, operator_id: str, **overrides: Any) -> Consent:
    args: dict[str, Any] = {
        "subject_id": FIRM,
        "operator_id": operator_id,
        "template": "tax_paid_at_least",
        "consent_id": None,
        "now": NOW,
    }
    args.update(overrides)
    with runtime.sessions() as session:
        return require_consent(session, **args)


def _events(runtime: Runtime, target_id: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.seq)
        return list(session.execute(query).scalars())


def test_grant_records_the_consent_and_one_event(runtime: Runtime) -> None:
    [operator_id] = _operators(runtime)
    consent = _grant(runtime, operator_id)
    assert (consent.granted_at, consent.valid_until) == (NOW, NOW + timedelta(days=30))
    assert consent.templates == ["tax_paid_at_least", "no_social_insurance_arrears"]
    [event] = _events(runtime, consent.id)
    assert (event.action, event.actor_kind, event.actor_id) == (
        AuditAction.CONSENT_GRANT,
        "subject",
        SUBJECT.id,
    )
    assert (event.target_type, event.request_id) == ("consent", "req-grant")
    assert FIRM not in event.entry  # the permanent log names the subject's account, not its number


def test_grant_lists_every_problem_and_writes_nothing(runtime: Runtime) -> None:
    with pytest.raises(ConsentInvalid) as error:
        _grant(
            runtime,
            "no-such-operator",
            subject_id="not-a-code",
            purpose="",
            templates=["tax_paid_at_least", "read_everything", "tax_paid_at_least", 7],
            valid_days=367,
        )
    assert error.value.status == 422
    assert {problem["field"] for problem in error.value.details} == {
        "subject_id",
        "operator_id",
        "purpose",
        "templates[1]",
        "templates[2]",
        "templates[3]",
        "valid_days",
    }
    with runtime.sessions() as session:
        assert session.execute(select(func.count()).select_from(Consent)).scalar_one() == 0


def test_revoke_is_the_subjects_own_and_happens_once(runtime: Runtime) -> None:
    [operator_id] = _operators(runtime)
    consent = _grant(runtime, operator_id)
    later = NOW + timedelta(days=2)
    with transaction(runtime.sessions) as session, pytest.raises(NotFound) as theirs:
        revoke_consent(session, consent.id, subject_id=OTHER_FIRM, actor=SUBJECT, request_id=None)
    with transaction(runtime.sessions) as session, pytest.raises(NotFound) as missing:
        revoke_consent(session, "no-such-consent", subject_id=FIRM, actor=SUBJECT, request_id=None)
    assert str(theirs.value) == str(missing.value)
    with transaction(runtime.sessions) as session:
        revoked = revoke_consent(
            session, consent.id, subject_id=FIRM, actor=SUBJECT, request_id="req-revoke", clock=lambda: later
        )
    assert revoked.revoked_at == later
    with transaction(runtime.sessions) as session, pytest.raises(InvalidTransition) as twice:
        revoke_consent(session, consent.id, subject_id=FIRM, actor=SUBJECT, request_id=None)
    assert twice.value.status == 409
    _, revoke = _events(runtime, consent.id)
    assert (revoke.action, revoke.request_id) == (AuditAction.CONSENT_REVOKE, "req-revoke")


def test_require_consent_finds_a_valid_consent(runtime: Runtime) -> None:
    [operator_id] = _operators(runtime)
    consent = _grant(runtime, operator_id)
    assert _require(runtime, operator_id).id == consent.id
    assert _require(runtime, operator_id, consent_id=consent.id).id == consent.id
    last_moment = NOW + timedelta(days=30) - timedelta(microseconds=1)
    assert (
        _require(runtime, operator_id, now=last_moment, template="no_social_insurance_arrears").id
        == consent.id
    )


def test_require_consent_refuses_every_other_case(runtime: Runtime) -> None:
    ours, theirs = _operators(runtime, 2)
    with transaction(runtime.sessions) as session:
        valid = make_consent(session, subject_id=FIRM, operator_id=ours)
        revoked = make_consent(session, subject_id=OTHER_FIRM, operator_id=ours, revoked=True)
    cases: dict[str, dict[str, Any]] = {
        "no consent at all": {"subject_id": "913701023C5YYYY35U"},
        "for another operator": {"operator_id": theirs},
        "for another operator, by id": {"operator_id": theirs, "consent_id": valid.id},
        "not covering the template": {"template": "tax_credit_grade_in"},
        "not covering the template, by id": {"template": "tax_credit_grade_in", "consent_id": valid.id},
        "expired": {"now": NOW + timedelta(days=30)},
        "expired, by id": {"now": NOW + timedelta(days=30), "consent_id": valid.id},
        "before it was granted": {"now": NOW - timedelta(seconds=1)},
        "revoked": {"subject_id": OTHER_FIRM},
        "revoked, by id": {"subject_id": OTHER_FIRM, "consent_id": revoked.id},
        "another subject's, by id": {"subject_id": OTHER_FIRM, "consent_id": valid.id},
        "unknown id": {"consent_id": "no-such-consent"},
    }
    messages = set()
    for case, overrides in cases.items():
        with pytest.raises(ConsentRequired) as error:
            _require(runtime, overrides.pop("operator_id", ours), **overrides)
        assert (error.value.status, error.value.code) == (403, "consent_required"), case
        messages.add(str(error.value))
    assert len(messages) == 1  # one message whatever the reason: nothing to probe


def test_accesses_are_listed_newest_first_with_a_cursor(runtime: Runtime) -> None:
    [operator_id] = _operators(runtime)
    with transaction(runtime.sessions) as session:
        contract = make_contract(session, operator_id=operator_id)
        for index, template in enumerate(
            ["tax_paid_at_least", "no_social_insurance_arrears", "enterprise_active"]
        ):
            record_access(
                session,
                subject_id=FIRM,
                operator_id=operator_id,
                template=template,
                authorization_id=contract.id,
                job_id=f"job-{index}",
                outcome=Outcome.SUCCESS,
                clock=lambda: NOW,  # one instant: order must not rest on timestamps
            )
        record_access(
            session,
            subject_id=OTHER_FIRM,
            operator_id=operator_id,
            template="enterprise_active",
            authorization_id=contract.id,
            job_id=None,
            outcome=Outcome.DENIED,
        )
    with runtime.sessions() as session:
        page = list_accesses(session, FIRM, limit=2)
        assert [a.job_id for a in page] == ["job-2", "job-1"]
        assert page[0].operator_name == "运营方0"
        rest = list_accesses(session, FIRM, limit=2, before=page[-1].id)
        assert [a.job_id for a in rest] == ["job-0"]
        assert [a.outcome for a in list_accesses(session, OTHER_FIRM)] == ["denied"]
        with pytest.raises(Invalid):
            list_accesses(session, FIRM, limit=0)
