"""Names and purposes are one line of visible text; reasons and comments are lines of visible
text; accounts hold what sign-in can use.

Found by a black-box sweep: a newline, a bell or a right-to-left override in an operator's name
or a purpose was stored and shown to reviewers and kept in the audit log; an account could be
made that could never sign in (a 100,000-character password, a malformed subject id), or named
like another but for case.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from authz.accounts import create_account
from authz.permissions import Role
from core.db import transaction
from core.errors import Conflict, Invalid
from core.text import line_problem, note_text
from operators import services as operator_services
from operators.models import OperatorStatus
from sandbox.runtime import Runtime
from tests.api.conftest import ADMIN, CONTRACT_REQUEST, Party

NOT_ONE_LINE = [
    "a\nb",
    "a\rb",
    "a\u0007b",
    "\u202e\u200b",
    "a\u2028b",
    "贷款\u200b申请",
    "a\x1b[31mb",
    "ab\n",
    "ab\u2028",
]
LINE_PROBLEM = "one line, without control characters, bidi controls or invisible spaces"


def test_a_line_is_visible_text_on_one_line() -> None:
    for text in NOT_ONE_LINE:
        assert line_problem(text, 50) == LINE_PROBLEM, text
    for text in (
        "齐鲁普惠贷科技有限公司",
        "Bank of Jinan (济南) Co., Ltd.",
        "  padded  ",
        "a\u00a0b",
        "x" * 50,
        "👩\u200d💻 fintech",  # a joiner inside an emoji
        "soft\u00adhyphen",
    ):
        assert line_problem(text, 50) is None, text
    assert line_problem("", 50) == line_problem("   ", 50) == line_problem("x" * 51, 50) == "1-50 characters"
    assert line_problem(7, 50) == "1-50 characters"


def test_operator_names_licences_and_qualifications(client: FlaskClient, admin: Party) -> None:
    base = {"name": "某银行", "credit_code": "913701023C5XXXX217", "license_no": "L-1", "qualifications": []}
    for field, value in [("name", t) for t in NOT_ONE_LINE] + [("license_no", "L\n1")]:
        response = client.post("/v1/operators", json={**base, field: value}, headers=admin.headers)
        assert response.status_code == 422, (field, value)
        assert response.get_json()["error"]["details"][0]["field"] == field
    bad = client.post(
        "/v1/operators",
        json={**base, "qualifications": ["ok", "bell\u0007", "ICP\u2028", "x\n"]},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"] == [
        {"field": f"qualifications.{index}", "message": LINE_PROBLEM} for index in (1, 2, 3)
    ]
    assert client.get("/v1/operators", headers=admin.headers).get_json()["operators"] == []
    assert client.post("/v1/operators", json=base, headers=admin.headers).status_code == 201


def test_purposes_of_contracts_and_consents(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    for purpose in NOT_ONE_LINE:
        response = client.post(
            "/v1/authorizations", json={**CONTRACT_REQUEST, "purpose": purpose}, headers=operator.headers
        )
        assert response.status_code == 422, purpose
        assert [d["field"] for d in response.get_json()["error"]["details"]] == ["purpose"]
    from tests.api.conftest import make_account

    subject = make_account(runtime, client, Role.SUBJECT, "firm-owner", subject_id="913701023C5XXXX13C")
    consent = {"operator_id": operator.id, "templates": ["tax_paid_at_least"], "valid_days": 30}
    for purpose in NOT_ONE_LINE:
        response = client.post("/v1/consents", json={**consent, "purpose": purpose}, headers=subject.headers)
        assert response.status_code == 422, purpose
    assert (
        client.post(
            "/v1/consents", json={**consent, "purpose": "贷款申请"}, headers=subject.headers
        ).status_code
        == 201
    )


def test_accounts_that_could_never_sign_in_are_refused(runtime: Runtime) -> None:
    subject = {"role": Role.SUBJECT, "password": "p" * 12}
    cases = [
        ({"username": "long1", "role": Role.REVIEWER, "password": "p" * 257, "subject_id": None}, "password"),
        ({"username": "firm9", **subject, "subject_id": "123"}, "subject_id"),
        ({"username": "firm8", **subject, "subject_id": "91370102MA3C5XXXX1\n"}, "subject_id"),
    ]
    for fields, field in cases:
        with pytest.raises(Invalid) as refused, transaction(runtime.sessions) as session:
            create_account(session, actor=ADMIN, **fields)  # type: ignore[arg-type]
        assert [d["field"] for d in refused.value.details] == [field]
    with transaction(runtime.sessions) as session:
        create_account(
            session, username="rev2", role=Role.REVIEWER, password="p" * 256, subject_id=None, actor=ADMIN
        )
    with pytest.raises(Conflict), transaction(runtime.sessions) as session:
        create_account(
            session, username="REV2", role=Role.REVIEWER, password="p" * 12, subject_id=None, actor=ADMIN
        )


def test_usernames_in_another_case_are_refused_by_the_database_too(runtime: Runtime) -> None:
    """Two requests can both pass the service's check before either commits: the unique key decides."""
    from sqlalchemy import insert, select

    from authz.models import Account
    from core.clock import utcnow

    with transaction(runtime.sessions) as session:  # what the other request committed meanwhile
        session.execute(
            insert(Account).values(
                id="raced", username="Rev3", username_key="rev3", role="reviewer", password_hash="x",
                created_at=utcnow(),
            )
        )  # fmt: skip

    class _MissesTheOtherRequest:
        """A session whose first read runs before the other request committed (finds nothing)."""

        def __init__(self, session: Any) -> None:
            self._session, self._first = session, True

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            if self._first:
                self._first = False
                return self._session.execute(select(Account.id).where(Account.id == "none"))
            return self._session.execute(*args, **kwargs)

        def __getattr__(self, name: str) -> object:
            return getattr(self._session, name)

    with pytest.raises(Conflict, match="taken"), transaction(runtime.sessions) as session:
        create_account(
            _MissesTheOtherRequest(session),  # type: ignore[arg-type]
            username="REV3", role=Role.REVIEWER, password="p" * 12, subject_id=None, actor=ADMIN,
        )  # fmt: skip
    with runtime.sessions() as session:
        assert session.execute(
            select(Account.username).where(Account.username_key == "rev3")
        ).scalars().all() == ["Rev3"]


NOT_A_NOTE = ["a\x1b[31mb", "a\u0007b", "\u202eevil", "a\u200bb", "a\u2028b", "a\x00b", "a\x7fb"]
NOTE_PROBLEM = "lines of text, without other control characters, bidi controls or invisible spaces"


def test_a_note_keeps_its_lines_and_refuses_other_controls() -> None:
    assert note_text("  first line\r\nsecond\tcolumn\rthird\n ", 50, required=True) == (
        "first line\nsecond\tcolumn\nthird",
        None,
    )
    for text in NOT_A_NOTE:
        assert note_text(text, 50, required=True) == (None, NOTE_PROBLEM), text
    assert note_text(None, 50, required=False) == note_text("  ", 50, required=False) == (None, None)
    assert note_text("", 50, required=True) == note_text(None, 50, required=True) == (None, "1-50 characters")
    assert note_text("x" * 51, 50, required=False) == (None, "at most 50 characters")
    assert note_text("\r\n".join("x" * 9 for _ in range(5)), 50, required=True)[1] is None  # CRLF counts once
    assert note_text("👩\u200d💻 贷款", 50, required=True) == ("👩\u200d💻 贷款", None)


def test_reasons_and_comments_of_reviewers(
    client: FlaskClient, runtime: Runtime, operator: Party, reviewer: Party
) -> None:
    made = client.post("/v1/authorizations", json=CONTRACT_REQUEST, headers=operator.headers).get_json()
    url = f"/v1/authorizations/{made['id']}"
    for text in NOT_A_NOTE[:-2]:  # NUL and DEL: NUL is the body's own 400
        for action, body in (("reject", {"reason": text}), ("approve", {"comment": text})):
            response = client.post(f"{url}/{action}", json=body, headers=reviewer.headers)
            assert response.status_code == 422, (action, text)
            assert response.get_json()["error"]["details"][0]["message"] == NOTE_PROBLEM
    assert client.get(url, headers=operator.headers).get_json()["status"] == "pending"  # nothing decided
    approved = client.post(f"{url}/approve", json={"comment": "同意\r\n期限三十天"}, headers=reviewer.headers)
    assert approved.status_code == 200
    assert approved.get_json()["decision_comment"] == "同意\n期限三十天"
    revoked = client.post(f"{url}/revoke", json={"reason": "a\x7fb"}, headers=reviewer.headers)
    assert revoked.status_code == 422 and revoked.get_json()["error"]["details"][0]["field"] == "reason"


def test_an_operators_reason_is_refused_when_too_long_not_cut(runtime: Runtime, operator: Party) -> None:
    with pytest.raises(Invalid) as refused, transaction(runtime.sessions) as session:
        operator_services.set_status(
            session, operator.id, OperatorStatus.SUSPENDED, reason="x" * 501, actor=ADMIN, request_id=None
        )
    assert refused.value.details == [{"field": "reason", "message": "1-500 characters"}]
    with pytest.raises(Invalid), transaction(runtime.sessions) as session:
        operator_services.set_status(
            session, operator.id, OperatorStatus.SUSPENDED, reason="bad\x1b[2J", actor=ADMIN, request_id=None
        )
    with transaction(runtime.sessions) as session:
        kept = operator_services.set_status(
            session, operator.id, OperatorStatus.SUSPENDED, reason="x" * 500, actor=ADMIN, request_id=None
        )
        assert kept.status_reason == "x" * 500
