"""Authorization contracts: validation against policy, the lifecycle, ownership, expiry, audit."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from audit import Actor, ActorKind, AuditAction, AuditEvent, Outcome, Target, record_event
from authz import contracts
from authz.contract_models import Authorization, AuthorizationStatus, parse_request, request_problems
from authz.errors import AuthorizationInactive, ContractInvalid, InvalidTransition, record_denial
from catalog import Catalog
from core.db import transaction
from core.errors import Invalid, NotFound
from sandbox.engine.models import ResultKind
from sandbox.engine.sealing import Release, release
from sandbox.runtime import Runtime
from tests.factories import NOW, TAX_OPERATIONS, TAX_SCOPE, make_contract, make_operator

REVIEWER = Actor(ActorKind.REVIEWER, "reviewer-1")
LIMITS: dict[str, Any] = {
    "valid_days": 90,
    "daily_quota": 1000,
    "epsilon_total": 5.0,
    "epsilon_per_query": 0.5,
}


def _operator_actor(operator_id: str) -> Actor:
    return Actor(ActorKind.OPERATOR, operator_id)


def _fields(error: pytest.ExceptionInfo[ContractInvalid]) -> set[str]:
    return {problem["field"] for problem in error.value.details}


def _problems(catalog: Catalog, **overrides: Any) -> set[str]:
    request: dict[str, Any] = {
        "purpose": "贷前核验",
        "datasets": TAX_SCOPE,
        "operations": TAX_OPERATIONS,
        "limits": LIMITS,
        "consent_required": None,
    }
    request.update(overrides)
    return {problem["field"] for problem in request_problems(catalog, **request)}


def _events(runtime: Runtime, target_id: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.seq)
        return list(session.execute(query).scalars())


def _event_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def _request(runtime: Runtime, operator_id: str, **overrides: Any) -> Authorization:
    args: dict[str, Any] = {
        "purpose": "小微企业贷前核验",
        "datasets": TAX_SCOPE,
        "operations": TAX_OPERATIONS,
        "limits": LIMITS,
    }
    args.update(overrides)
    with transaction(runtime.sessions) as session:
        return contracts.request_authorization(
            session,
            runtime.catalog,
            operator_id=operator_id,
            actor=_operator_actor(operator_id),
            request_id="req-request",
            clock=lambda: NOW,
            **args,
        )


def _approve(runtime: Runtime, contract_id: str, *, at: datetime = NOW, **limits: Any) -> Authorization:
    with transaction(runtime.sessions) as session:
        return contracts.approve(
            session,
            runtime.catalog,
            contract_id,
            reviewer_id="reviewer-1",
            comment="用途明确",
            limits=limits or None,
            actor=REVIEWER,
            request_id="req-approve",
            clock=lambda: at,
        )


def _new_operator(runtime: Runtime) -> str:
    with transaction(runtime.sessions) as session:
        return make_operator(session).id


# --- Validation (catalog only) --------------------------------------------------------------------


def test_request_lists_every_problem_at_once(catalog: Catalog) -> None:
    datasets = {
        "enterprise_tax": ["credit_code", "no_such_field", "credit_code"],
        "enterprises": ["legal_rep_id", "name"],
        "household_registration": [],
        "no_such_dataset": ["x"],
    }
    operations = [
        "aggregate",
        "delete",
        "verify:no_such_template",
        "verify:owns_property_in_district",
        "aggregate",
    ]
    assert _problems(catalog, purpose=" ", datasets=datasets, operations=operations) == {
        "purpose",
        "datasets.enterprise_tax[1]",
        "datasets.enterprise_tax[2]",
        "datasets.enterprises[0]",  # forbidden
        "datasets.enterprises[1]",  # a field policy gives no use
        "datasets.household_registration",
        "datasets.no_such_dataset",
        "operations[1]",
        "operations[2]",
        "operations[3]",  # its dataset is not requested
        "operations[4]",  # listed twice
    }


def test_limits_are_held_to_the_disclosure_ceilings(catalog: Catalog) -> None:
    bad = {
        "valid_days": 367,
        "daily_quota": 0,
        "epsilon_total": float("nan"),
        "epsilon_per_query": 1.5,
        "min_cell_size": 9,
        "window": 3,
    }
    assert _problems(catalog, limits=bad) == {
        "limits.valid_days",
        "limits.daily_quota",
        "limits.epsilon_total",
        "limits.epsilon_per_query",
        "limits.min_cell_size",
        "limits.window",
    }
    assert _problems(catalog, limits={**LIMITS, "epsilon_total": 0.2}) == {"limits.epsilon_per_query"}
    assert _problems(catalog, limits={**LIMITS, "epsilon_total": float("inf")}) == {"limits.epsilon_total"}
    assert _problems(catalog, limits={**LIMITS, "epsilon_total": 11}) == {"limits.epsilon_total"}
    tiny = {**LIMITS, "epsilon_total": 5e-324, "epsilon_per_query": 5e-324}  # > 0, far under EPSILON_MIN
    assert _problems(catalog, limits=tiny) == {"limits.epsilon_total", "limits.epsilon_per_query"}
    assert _problems(catalog, limits={**LIMITS, "daily_quota": True}) == {"limits.daily_quota"}
    assert _problems(catalog, limits={**LIMITS, "daily_quota": 100_001}) == {"limits.daily_quota"}
    assert _problems(catalog, limits={**LIMITS, "valid_days": 0}) == {"limits.valid_days"}
    assert _problems(catalog, limits={}) == {f"limits.{name}" for name in LIMITS}
    assert _problems(catalog, limits=[1]) == {"limits"}


def test_verify_template_needs_its_key_and_touched_fields(catalog: Catalog) -> None:
    scope = {"enterprise_tax": ["year", "annual_tax"]}  # no key: the template could not find a subject
    assert _problems(catalog, datasets=scope, operations=["verify:tax_paid_at_least"]) == {"operations[0]"}
    scope = {"enterprise_tax": ["credit_code", "year", "annual_tax"]}
    assert _problems(catalog, datasets=scope, operations=["verify:tax_paid_at_least"]) == set()


def test_consent_defaults_from_templates_and_cannot_be_waived(catalog: Catalog) -> None:
    def parse(operations: list[str], consent: object = None) -> bool:
        return parse_request(
            catalog,
            purpose="p",
            datasets={"enterprises": ["credit_code", "status", "registered_capital"]},
            operations=operations,
            limits=LIMITS,
            consent_required=consent,
        ).consent_required

    assert parse(["verify:enterprise_active"]) is False
    assert parse(["verify:enterprise_active"], True) is True
    assert _problems(catalog, consent_required=False) == {"consent_required"}
    assert _problems(catalog, consent_required="no") == {"consent_required"}


def test_min_cell_size_defaults_to_the_policy_floor(catalog: Catalog) -> None:
    request = parse_request(
        catalog,
        purpose="p",
        datasets=TAX_SCOPE,
        operations=TAX_OPERATIONS,
        limits=LIMITS,
        consent_required=None,
    )
    assert request.limits["min_cell_size"] == catalog.min_cell_size("enterprise_tax")


def _contract(status: AuthorizationStatus) -> Authorization:
    approved = status in (AuthorizationStatus.APPROVED, AuthorizationStatus.REVOKED)
    return Authorization(
        status=status.value,
        valid_from=NOW if approved else None,
        valid_until=NOW + timedelta(days=1) if approved else None,
    )


@pytest.mark.parametrize(
    ("status", "at", "expected"),
    [
        (AuthorizationStatus.PENDING, NOW, "pending"),
        (AuthorizationStatus.REJECTED, NOW, "rejected"),
        (AuthorizationStatus.REVOKED, NOW, "revoked"),
        (AuthorizationStatus.APPROVED, NOW + timedelta(days=1), "expired"),
        (AuthorizationStatus.APPROVED, NOW - timedelta(seconds=1), "not yet valid"),
    ],
)
def test_check_active_refuses_an_inactive_contract(
    status: AuthorizationStatus, at: datetime, expected: str
) -> None:
    with pytest.raises(AuthorizationInactive, match=expected) as error:
        contracts.check_active(_contract(status), at)
    assert (error.value.status, error.value.code) == (403, "authorization_inactive")


def test_check_active_passes_within_validity() -> None:
    contract = _contract(AuthorizationStatus.APPROVED)
    contracts.check_active(contract, NOW)
    contracts.check_active(contract, NOW + timedelta(days=1) - timedelta(microseconds=1))
    assert contract.effective_status(NOW + timedelta(days=1)) is AuthorizationStatus.EXPIRED


# --- Lifecycle on the databases -------------------------------------------------------------------


def test_request_files_a_pending_contract_with_one_event(runtime: Runtime) -> None:
    operator_id = _new_operator(runtime)
    contract = _request(runtime, operator_id)
    assert contract.status == "pending"
    assert contract.consent_required is True
    assert contract.valid_from is None
    assert contract.limits()["min_cell_size"] == runtime.catalog.min_cell_size("enterprise_tax")
    [event] = _events(runtime, contract.id)
    assert event.action == AuditAction.AUTHORIZATION_REQUEST
    assert (event.actor_kind, event.actor_id) == ("operator", operator_id)
    assert (event.target_type, event.request_id, event.outcome) == ("authorization", "req-request", "success")


def test_invalid_request_writes_nothing_and_its_denial_is_recorded_apart(runtime: Runtime) -> None:
    operator_id = _new_operator(runtime)
    before = _event_count(runtime)
    with pytest.raises(ContractInvalid) as error:
        _request(runtime, operator_id, datasets={"enterprises": ["legal_rep_id"]})
    assert _fields(error) == {"datasets.enterprises[0]", "operations[0]"}
    assert error.value.status == 422
    with runtime.sessions() as session:
        assert session.execute(select(func.count()).select_from(Authorization)).scalar_one() == 0
    assert _event_count(runtime) == before
    with transaction(runtime.sessions) as session:
        record_denial(
            session,
            action=AuditAction.AUTHORIZATION_REQUEST,
            actor=_operator_actor(operator_id),
            target=Target("authorization"),
            error=error.value,
            request_id="req-denied",
        )
    with runtime.sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.request_id == "req-denied")).scalar_one()
    assert (event.outcome, event.error_code) == (Outcome.DENIED, "invalid")
    assert event.details["problem_count"] == 2


def test_approve_starts_validity_and_approving_twice_conflicts(runtime: Runtime) -> None:
    contract = _request(runtime, _new_operator(runtime))
    approved = _approve(runtime, contract.id)
    assert approved.status == "approved"
    assert (approved.valid_from, approved.valid_until) == (NOW, NOW + timedelta(days=90))
    assert (approved.decided_by, approved.decision_comment) == ("reviewer-1", "用途明确")
    with pytest.raises(InvalidTransition) as error:
        _approve(runtime, contract.id)
    assert error.value.status == 409
    _, approval = _events(runtime, contract.id)
    assert approval.action == AuditAction.AUTHORIZATION_APPROVE
    assert (approval.actor_kind, approval.actor_id, approval.request_id) == (
        "reviewer",
        "reviewer-1",
        "req-approve",
    )


def test_a_contract_filed_under_older_rules_can_still_be_approved(runtime: Runtime) -> None:
    """Its purpose (two lines, refused for a new request now) is not the reviewer's to change:
    approving checks the scope and the limits again, not the purpose."""
    contract = _request(runtime, _new_operator(runtime))
    with transaction(runtime.sessions) as session:
        stored = session.get(Authorization, contract.id)
        assert stored is not None
        stored.purpose = "小微企业贷前核验\n第二行"
    assert _approve(runtime, contract.id).status == "approved"
    with pytest.raises(ContractInvalid) as refused:
        _request(runtime, _new_operator(runtime), purpose="小微企业贷前核验\n第二行")
    assert _fields(refused) == {"purpose"}


def test_only_pending_contracts_are_decided_and_only_approved_ones_revoked(runtime: Runtime) -> None:
    contract = _request(runtime, _new_operator(runtime))
    review = {"reviewer_id": "reviewer-1", "actor": REVIEWER, "clock": lambda: NOW}
    with transaction(runtime.sessions) as session, pytest.raises(InvalidTransition):
        contracts.revoke(session, contract.id, reason="未生效", actor=REVIEWER, request_id=None)
    with transaction(runtime.sessions) as session:
        rejected = contracts.reject(
            session, contract.id, reason="用途不明确", request_id="req-reject", **review
        )
    assert (rejected.status, rejected.decision_comment) == ("rejected", "用途不明确")
    for attempt in (
        lambda s: contracts.reject(s, contract.id, reason="again", request_id=None, **review),
        lambda s: contracts.approve(s, runtime.catalog, contract.id, comment=None, request_id=None, **review),
        lambda s: contracts.revoke(s, contract.id, reason="x", actor=REVIEWER, request_id=None),
    ):
        with transaction(runtime.sessions) as session, pytest.raises(InvalidTransition):
            attempt(session)
    actions = [event.action for event in _events(runtime, contract.id)]
    assert actions == [AuditAction.AUTHORIZATION_REQUEST, AuditAction.AUTHORIZATION_REJECT]


def test_revoked_contract_is_inactive_and_cannot_be_revoked_again(runtime: Runtime) -> None:
    contract = _request(runtime, _new_operator(runtime))
    _approve(runtime, contract.id)
    later = NOW + timedelta(days=1)
    with transaction(runtime.sessions) as session:
        revoked = contracts.revoke(
            session,
            contract.id,
            reason="超范围使用",
            actor=REVIEWER,
            request_id="req-revoke",
            clock=lambda: later,
        )
    assert (revoked.status, revoked.revoked_at, revoked.revoke_reason) == ("revoked", later, "超范围使用")
    with pytest.raises(AuthorizationInactive, match="revoked"):
        contracts.check_active(revoked, later)
    with transaction(runtime.sessions) as session, pytest.raises(InvalidTransition):
        contracts.revoke(session, contract.id, reason="again", actor=REVIEWER, request_id=None)
    other = _approve(runtime, _request(runtime, revoked.operator_id).id)
    with transaction(runtime.sessions) as session, pytest.raises(ContractInvalid):
        contracts.revoke(session, other.id, reason=" ", actor=REVIEWER, request_id=None, clock=lambda: later)
    event = _events(runtime, contract.id)[-1]
    assert (event.action, event.request_id, event.details["reason"]) == (
        AuditAction.AUTHORIZATION_REVOKE,
        "req-revoke",
        "超范围使用",
    )


def test_reviewer_may_tighten_limits(runtime: Runtime) -> None:
    contract = _request(runtime, _new_operator(runtime))
    approved = _approve(
        runtime,
        contract.id,
        daily_quota=10,
        epsilon_total=1.0,
        epsilon_per_query=0.1,
        valid_days=7,
        min_cell_size=20,
    )
    assert approved.limits() == {
        "valid_days": 7,
        "daily_quota": 10,
        "epsilon_total": 1.0,
        "epsilon_per_query": 0.1,
        "min_cell_size": 20,
    }
    assert approved.valid_until == NOW + timedelta(days=7)
    assert _events(runtime, contract.id)[-1].details["limits_changed"]["daily_quota"] == [1000, 10]


def test_reviewer_may_not_loosen_limits(runtime: Runtime) -> None:
    contract = _request(runtime, _new_operator(runtime), limits={**LIMITS, "min_cell_size": 20})
    with pytest.raises(ContractInvalid) as error:
        _approve(
            runtime, contract.id, daily_quota=2000, epsilon_total=10.0, min_cell_size=15, valid_days=400, x=1
        )
    assert _fields(error) == {
        "limits.daily_quota",  # above the request
        "limits.epsilon_total",  # above the request (yet within policy)
        "limits.min_cell_size",  # below the request (yet within policy)
        "limits.valid_days",  # above the request and past policy: each problem listed
        "limits.x",
    }
    assert len(error.value.details) == 6
    with runtime.sessions() as session:
        assert contracts.get_contract(session, contract.id, operator_id=None).status == "pending"
    assert len(_events(runtime, contract.id)) == 1


def test_another_operators_contract_reads_exactly_like_a_missing_one(runtime: Runtime) -> None:
    owner, stranger = _new_operator(runtime), _new_operator(runtime)
    contract = _request(runtime, owner)
    with runtime.sessions() as session:
        assert contracts.get_contract(session, contract.id, operator_id=owner).id == contract.id
        assert contracts.get_contract(session, contract.id, operator_id=None).id == contract.id
        with pytest.raises(NotFound) as theirs:
            contracts.get_contract(session, contract.id, operator_id=stranger)
        with pytest.raises(NotFound) as missing:
            contracts.get_contract(session, "00000000-0000-0000-0000-000000000000", operator_id=stranger)
    assert (str(theirs.value), theirs.value.code) == (str(missing.value), missing.value.code)


def test_contract_expires_with_time(runtime: Runtime) -> None:
    operator_id = _new_operator(runtime)
    contract = _approve(runtime, _request(runtime, operator_id, limits={**LIMITS, "valid_days": 1}).id)
    end = NOW + timedelta(days=1)
    contracts.check_active(contract, end - timedelta(seconds=1))
    with pytest.raises(AuthorizationInactive, match="expired"):
        contracts.check_active(contract, end)
    with runtime.sessions() as session:
        listed = contracts.list_contracts(session, operator_id=operator_id, status="expired", now=end)
        assert [c.id for c in listed] == [contract.id]
        assert contracts.list_contracts(session, operator_id=operator_id, status="approved", now=end) == []
    with transaction(runtime.sessions) as session, pytest.raises(InvalidTransition, match="expired"):
        contracts.revoke(
            session, contract.id, reason="late", actor=REVIEWER, request_id=None, clock=lambda: end
        )


def test_list_contracts_by_operator_and_status(runtime: Runtime) -> None:
    first, second = _new_operator(runtime), _new_operator(runtime)
    pending = _request(runtime, first)
    approved = _approve(runtime, _request(runtime, first).id)
    theirs = _request(runtime, second)
    with runtime.sessions() as session:
        mine = contracts.list_contracts(session, operator_id=first, status=None, now=NOW)
        assert {c.id for c in mine} == {pending.id, approved.id}
        everyone = contracts.list_contracts(session, operator_id=None, status="pending", now=NOW)
        assert {c.id for c in everyone} == {pending.id, theirs.id}
        assert [
            c.id for c in contracts.list_contracts(session, operator_id=first, status="approved", now=NOW)
        ] == [approved.id]
        with pytest.raises(Invalid):
            contracts.list_contracts(session, operator_id=None, status="active", now=NOW)


def _approve_then_fail(runtime: Runtime, contract_id: str) -> None:
    with transaction(runtime.sessions) as session:
        contracts.approve(
            session,
            runtime.catalog,
            contract_id,
            reviewer_id="r",
            comment=None,
            actor=REVIEWER,
            request_id=None,
        )
        raise RuntimeError("the caller failed after approving")


def test_rolled_back_approval_changes_nothing_and_writes_no_event(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        contract = make_contract(
            session, operator_id=make_operator(session).id, status=AuthorizationStatus.PENDING
        )
    before = _event_count(runtime)
    with pytest.raises(RuntimeError):
        _approve_then_fail(runtime, contract.id)
    assert _event_count(runtime) == before
    with runtime.sessions() as session:
        assert contracts.get_contract(session, contract.id, operator_id=None).status == "pending"


def test_a_revocation_does_not_deadlock_with_a_result_being_released(runtime: Runtime) -> None:
    """A release writes its audit event (the log's head, locked to the end) and then its sealed
    result, which refers to the contract; a revocation locks the contract, then writes its event.
    On PostgreSQL a FOR UPDATE lock on the contract blocked the result's foreign-key check, so each
    waited for the other until one was killed as a deadlock."""
    with transaction(runtime.sessions) as session:
        contract = make_contract(session, operator_id=make_operator(session).id)
    actor = Actor(ActorKind.SYSTEM, "test")

    def revoke() -> str:
        with transaction(runtime.sessions) as session:
            revoked = contracts.revoke(
                session, contract.id, reason="撤销", actor=actor, request_id=None, clock=lambda: NOW
            )
            return revoked.status

    releasing = runtime.sessions()
    try:
        releasing.begin()
        record_event(releasing, action=AuditAction.JOB_START, actor=actor, target=Target("compute", "j"))
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(revoke)
            time.sleep(0.5)  # the revocation takes the contract and waits for the log's head
            release(
                releasing,
                Release(
                    kind=ResultKind.COMPUTE,
                    job_id=str(uuid.uuid4()),
                    operator_id=contract.operator_id,
                    authorization_id=contract.id,
                    answer={"outputs": {}},
                    action=AuditAction.JOB_FINISH,
                    details={},
                ),
                keys_dir=runtime.settings.keys_dir,
                actor=actor,
                request_id=None,
                clock=lambda: NOW,
            )
            releasing.commit()
            assert pending.result(timeout=60) == AuthorizationStatus.REVOKED.value
    finally:
        releasing.close()
