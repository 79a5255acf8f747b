"""Console fixtures: real accounts, an operator and a contract, made through the services."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from audit import Actor, ActorKind
from authz.accounts import create_account
from authz.contract_models import AuthorizationStatus
from authz.permissions import Role
from core.clock import utcnow
from core.db import transaction
from operators import services as operator_services
from sandbox.runtime import Runtime
from tests.factories import make_consent, make_contract

PASSWORD = "correct horse battery staple"
ADMIN = Actor(ActorKind.SYSTEM, "test")
FIRM = "913701003C5XXXX56W"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Operator:
    """An operator with its client credentials."""

    id: str
    client_id: str
    secret: str


def account(runtime: Runtime, role: Role, username: str, subject_id: str | None = None) -> str:
    """A staff or subject account with the shared password; its id."""
    with transaction(runtime.sessions) as session:
        return create_account(
            session, username=username, role=role, password=PASSWORD, subject_id=subject_id, actor=ADMIN
        ).id


def operator(runtime: Runtime, name: str, credit_code: str) -> Operator:
    """A registered operator with credentials."""
    with transaction(runtime.sessions) as session:
        made = operator_services.register_operator(
            session,
            name=name,
            credit_code=credit_code,
            license_no="LIC-1",
            qualifications=[],
            actor=ADMIN,
            request_id=None,
        )
        credential, secret = operator_services.issue_credentials(
            session, made.id, actor=ADMIN, request_id=None
        )
        return Operator(made.id, credential.client_id, secret)


def csrf_of(client: FlaskClient, path: str = "/console/login") -> str:
    """The CSRF token in the forms of ``path``."""
    found = CSRF.search(client.get(path).get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, username: str) -> None:
    """Sign ``username`` in through the login form."""
    token = csrf_of(client)
    response = client.post(
        "/console/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def sign_in_operator(client: FlaskClient, op: Operator) -> None:
    """Sign an operator in with its client credentials."""
    token = csrf_of(client)
    response = client.post(
        "/console/login/operator",
        data={"client_id": op.client_id, "client_secret": op.secret, "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.fixture
def people(runtime: Runtime) -> dict[str, str]:
    """One account of each person role; username → id."""
    return {
        "admin1": account(runtime, Role.ADMIN, "admin1"),
        "reviewer1": account(runtime, Role.REVIEWER, "reviewer1"),
        "auditor1": account(runtime, Role.AUDITOR, "auditor1"),
        "firm1": account(runtime, Role.SUBJECT, "firm1", subject_id=FIRM),
    }


@pytest.fixture
def op_a(runtime: Runtime) -> Operator:
    return operator(runtime, "齐鲁普惠贷科技有限公司", "913701023C5XXXX13C")


@pytest.fixture
def op_b(runtime: Runtime) -> Operator:
    return operator(runtime, "泉城数据服务有限公司", "913701023C5XXXX217")


@pytest.fixture
def pending_contract(runtime: Runtime, op_a: Operator) -> str:
    """A pending verification contract of operator A."""
    with transaction(runtime.sessions) as session:
        return make_contract(
            session, operator_id=op_a.id, status=AuthorizationStatus.PENDING, now=utcnow()
        ).id


def approved_contract(runtime: Runtime, op: Operator) -> str:
    """An approved contract of ``op``, valid from a minute ago."""
    with transaction(runtime.sessions) as session:
        return make_contract(session, operator_id=op.id, now=utcnow() - timedelta(minutes=1)).id


def consent_for(runtime: Runtime, op: Operator) -> str:
    """FIRM's consent to ``op`` for tax checks."""
    with transaction(runtime.sessions) as session:
        return make_consent(
            session, subject_id=FIRM, operator_id=op.id, templates=["tax_paid_at_least"], now=utcnow()
        ).id
