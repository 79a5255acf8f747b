"""Credit codes the bureau accepts though their check characters do not conform to GB 32100.

Before an acceptance such a code is refused everywhere as mistyped; after it, exactly that code is
verified, consented for, given a subject account and registered as an operator; after a
withdrawal it is refused again. Each change is audited, without the code in the log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.accounts import create_account
from authz.permissions import Role
from core.accepted_codes import acceptable
from core.clock import utcnow
from core.db import transaction
from core.errors import Invalid
from core.identifiers import USCC_CHARSET, is_valid_uscc, uscc_check_char
from sandbox.runtime import Runtime
from tests.api.conftest import ADMIN, Party, make_account
from tests.engine import rows
from tests.factories import make_consent, make_contract, resident_id

PERSON = resident_id("370102199001011230")

CONFORMING = rows.FIRM
# The same code with a final check character that does not match: what a non-conforming real
# code looks like to the checks (its organization-code check, at position 17, is right).
NONCONFORMING = (
    CONFORMING[:17] + USCC_CHARSET[(USCC_CHARSET.index(uscc_check_char(CONFORMING[:17])) + 1) % 31]
)
MISTYPED = "a character is mistyped"


def test_the_codes_of_these_tests_are_what_they_say() -> None:
    assert is_valid_uscc(CONFORMING) and not is_valid_uscc(NONCONFORMING)
    assert acceptable(NONCONFORMING) and not acceptable(CONFORMING)
    assert (
        not acceptable(NONCONFORMING.lower()) and not acceptable(NONCONFORMING[:17]) and not acceptable(None)
    )
    # All digits, a right ID number and a wrong credit code: acceptable, as a real code may be all digits.
    assert acceptable(PERSON)


@pytest.fixture
def data(runtime: Runtime) -> None:
    """The non-conforming code's firm paid 612,345.67 in 2024."""
    rows.write(
        runtime.stores, runtime.catalog, {"enterprise_tax": [rows.tax(NONCONFORMING, 2024, 612_345.67)]}
    )


def _accept(client: FlaskClient, admin: Party, code: str = NONCONFORMING, **body: Any) -> Any:
    return client.post(
        "/v1/accepted-codes",
        json={"code": code, "reason": "核对登记簿：2015 年赋码", **body},
        headers=admin.headers,
    )


def _verify(client: FlaskClient, runtime: Runtime, operator: Party) -> Any:
    with transaction(runtime.sessions) as session:
        contract = make_contract(
            session, operator_id=operator.id,
            datasets={"enterprise_tax": ["credit_code", "year", "annual_tax"]},
            operations=["verify:tax_paid_at_least"], daily_quota=100, now=utcnow() - timedelta(minutes=1),
        )  # fmt: skip
        make_consent(
            session, subject_id=NONCONFORMING, operator_id=operator.id, now=utcnow() - timedelta(minutes=1)
        )
        contract_id = contract.id
    body = {
        "authorization_id": contract_id, "template": "tax_paid_at_least", "subject": NONCONFORMING,
        "params": {"threshold": 500_000, "year": 2024},
    }  # fmt: skip
    return client.post("/v1/verify", json=body, headers=operator.headers)


@pytest.mark.usefixtures("data")
def test_an_accepted_code_is_verified_and_refused_again_once_withdrawn(
    runtime: Runtime, client: FlaskClient, admin: Party, operator: Party
) -> None:
    refused = _verify(client, runtime, operator)
    assert refused.status_code == 422 and MISTYPED in refused.get_json()["error"]["details"][0]["message"]

    accepted = _accept(client, admin)
    assert accepted.status_code == 201, accepted.get_json()
    row = accepted.get_json()
    assert row["code"] == NONCONFORMING and row["reason"] == "核对登记簿：2015 年赋码"
    assert row["accepted_by"] == f"admin:{admin.id}" and row["withdrawn_at"] is None
    answered = _verify(client, runtime, operator)
    assert answered.status_code == 200, answered.get_json()
    assert answered.get_json()["result"] is True and answered.get_json()["subject"] == NONCONFORMING

    withdraw = f"/v1/accepted-codes/{row['id']}/withdraw"
    withdrawn = client.post(withdraw, json={"reason": "登记簿已更正"}, headers=admin.headers)
    assert withdrawn.status_code == 200, withdrawn.get_json()
    assert withdrawn.get_json()["withdrawn_at"] and withdrawn.get_json()["withdraw_reason"] == "登记簿已更正"
    assert withdrawn.get_json()["withdrawn_by"] == f"admin:{admin.id}"
    again = _verify(client, runtime, operator)
    assert again.status_code == 422 and MISTYPED in again.get_json()["error"]["details"][0]["message"]

    with runtime.sessions() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(["code.accept", "code.withdraw"]))
            .order_by(AuditEvent.seq)
        ).all()
    assert [(e.action, e.target_type, e.target_id, e.actor_id) for e in events] == [
        ("code.accept", "accepted_code", row["id"], admin.id),
        ("code.withdraw", "accepted_code", row["id"], admin.id),
    ]
    assert [e.details for e in events] == [{"reason": "核对登记簿：2015 年赋码"}, {"reason": "登记簿已更正"}]
    assert not any(NONCONFORMING in e.entry for e in events)  # the code stays out of the permanent log

    listed = client.get("/v1/accepted-codes", headers=admin.headers)
    assert listed.status_code == 200 and listed.get_json()["codes"] == [withdrawn.get_json()]
    reaccepted = _accept(client, admin, reason="再次核对")
    assert reaccepted.status_code == 201 and reaccepted.get_json()["id"] == row["id"]  # the same row
    assert reaccepted.get_json()["withdrawn_at"] is None and reaccepted.get_json()["reason"] == "再次核对"
    assert _verify(client, runtime, operator).status_code == 200


def test_an_accepted_code_may_hold_an_account_consent_and_be_an_operator(
    runtime: Runtime, client: FlaskClient, admin: Party, operator: Party
) -> None:
    with pytest.raises(Invalid) as refused, transaction(runtime.sessions) as session:
        create_account(
            session, username="legacy.firm", role=Role.SUBJECT, password="a long enough password",
            subject_id=NONCONFORMING, actor=ADMIN,
        )  # fmt: skip
    assert MISTYPED in refused.value.details[0]["message"]
    registration = {
        "name": "老字号贷款",
        "credit_code": NONCONFORMING,
        "license_no": "L-9",
        "qualifications": [],
    }
    assert client.post("/v1/operators", json=registration, headers=admin.headers).status_code == 422

    assert _accept(client, admin).status_code == 201
    firm = make_account(runtime, client, Role.SUBJECT, "legacy.firm", subject_id=NONCONFORMING)
    grant = {
        "operator_id": operator.id,
        "purpose": "贷前核验",
        "templates": ["tax_paid_at_least"],
        "valid_days": 30,
    }
    consented = client.post("/v1/consents", json=grant, headers=firm.headers)
    assert consented.status_code == 201, consented.get_json()
    registered = client.post("/v1/operators", json=registration, headers=admin.headers)
    assert registered.status_code == 201, registered.get_json()


def test_accepting_checks_its_input_and_listing_every_problem(client: FlaskClient, admin: Party) -> None:
    def problems(**body: Any) -> dict[str, str]:
        response = _accept(client, admin, **body)
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["code"] == "invalid"
        return {p["field"]: p["message"] for p in response.get_json()["error"]["details"]}

    assert "check characters are right" in problems(code=CONFORMING)["code"]
    assert "names the code itself" in problems(reason=f"登记簿 {NONCONFORMING} 无误")["reason"]
    # However it is spelled (found in a sweep: only the exact string had been refused), or only
    # the firm's own part of it (the first eight characters are every firm of a district's).
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in NONCONFORMING)
    for spelled in (
        NONCONFORMING.lower(), f"{NONCONFORMING[:6]} {NONCONFORMING[6:]}", "-".join(NONCONFORMING),
        full_width, f"组织机构代码{NONCONFORMING[8:17]}",
    ):  # fmt: skip
        assert "names the code itself" in problems(reason=f"核对 {spelled} 无误")["reason"], spelled
    assert _accept(client, admin, reason=f"{NONCONFORMING[:8]} 地区的登记簿").status_code == 201
    (accepted,) = client.get("/v1/accepted-codes", headers=admin.headers).get_json()["codes"]
    withdraw = f"/v1/accepted-codes/{accepted['id']}/withdraw"
    named = client.post(withdraw, json={"reason": f"错: {NONCONFORMING.lower()}"}, headers=admin.headers)
    assert named.status_code == 422 and "names the code itself" in named.get_data(as_text=True)
    assert client.post(withdraw, json={"reason": "错"}, headers=admin.headers).status_code == 200
    assert "18-character" in problems(code=NONCONFORMING[:17])["code"]
    assert "18-character" in problems(code=NONCONFORMING.lower())["code"]
    both = problems(code=CONFORMING, reason="   ")
    assert set(both) == {"code", "reason"}
    assert "control characters" in problems(reason="原因\x1b[31m")["reason"]
    for body in (
        {"code": 91370102, "reason": "x"},
        {"code": NONCONFORMING},
        {"code": NONCONFORMING, "reason": "x", "kind": "uscc"},
    ):
        response = client.post("/v1/accepted-codes", json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.get_json())
    assert (
        client.post(
            "/v1/accepted-codes", json={"code": NONCONFORMING, "reason": "x" * 501}, headers=admin.headers
        ).status_code
        == 422
    )

    first = _accept(client, admin)
    assert first.status_code == 201
    twice = _accept(client, admin)
    assert twice.status_code == 409 and twice.get_json()["error"]["code"] == "conflict"
    withdraw = f"/v1/accepted-codes/{first.get_json()['id']}/withdraw"
    assert client.post(withdraw, json={"reason": "错"}, headers=admin.headers).status_code == 200
    again = client.post(withdraw, json={"reason": "错"}, headers=admin.headers)
    assert again.status_code == 409
    assert client.post(withdraw, json={}, headers=admin.headers).status_code == 422
    missing = client.post(
        "/v1/accepted-codes/no-such-id/withdraw", json={"reason": "错"}, headers=admin.headers
    )
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/accepted-codes?all=1", headers=admin.headers).status_code == 422


def test_only_the_admin_accepts_and_staff_read(
    runtime: Runtime, client: FlaskClient, admin: Party, reviewer: Party, auditor: Party, operator: Party
) -> None:
    firm = make_account(runtime, client, Role.SUBJECT, "some.firm", subject_id=CONFORMING)
    for party in (reviewer, auditor, operator, firm):
        assert _accept(client, party).status_code == 403
    row = _accept(client, admin).get_json()
    for party in (reviewer, auditor, admin):
        listed = client.get("/v1/accepted-codes", headers=party.headers)
        assert listed.status_code == 200 and [c["id"] for c in listed.get_json()["codes"]] == [row["id"]]
    for party in (operator, firm):
        assert client.get("/v1/accepted-codes", headers=party.headers).status_code == 403
    withdraw = f"/v1/accepted-codes/{row['id']}/withdraw"
    for party in (reviewer, auditor, operator, firm):
        assert client.post(withdraw, json={"reason": "x"}, headers=party.headers).status_code == 403
    assert client.get("/v1/accepted-codes").status_code == 401


@pytest.mark.usefixtures("data")
def test_a_dataset_keyed_by_resident_ids_takes_no_accepted_code(
    runtime: Runtime, client: FlaskClient, admin: Party, operator: Party
) -> None:
    assert _accept(client, admin).status_code == 201
    with transaction(runtime.sessions) as session:
        contract = make_contract(
            session, operator_id=operator.id,
            datasets={"household_registration": ["resident_id", "district"]},
            operations=["verify:household_in_district"], daily_quota=100, now=utcnow() - timedelta(minutes=1),
        )  # fmt: skip
        contract_id = contract.id
    body = {
        "authorization_id": contract_id, "template": "household_in_district", "subject": NONCONFORMING,
        "params": {"district": "历下区"},
    }  # fmt: skip
    response = client.post("/v1/verify", json=body, headers=operator.headers)
    assert response.status_code == 422, response.get_json()
    assert "resident ID number" in response.get_json()["error"]["details"][0]["message"]
