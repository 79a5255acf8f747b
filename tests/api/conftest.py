"""API fixtures: real accounts and operators inserted through the services, tokens from the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor, ActorKind
from authz.accounts import create_account
from authz.permissions import Role
from core.db import transaction
from operators import services as operator_services
from sandbox.runtime import Runtime

PASSWORD = "correct horse battery staple"
ADMIN = Actor(ActorKind.SYSTEM, "test")

# A verification contract a loan platform would ask for; shared by the API tests.
CONTRACT_REQUEST: dict[str, Any] = {
    "purpose": "小微企业信用贷款贷前核验",
    "datasets": {
        "enterprise_tax": ["credit_code", "year", "annual_tax"],
        "enterprises": ["credit_code", "status"],
    },
    "operations": ["verify:tax_paid_at_least", "verify:enterprise_active"],
    "limits": {
        "valid_days": 90,
        "daily_quota": 1000,
        "epsilon_total": 2.0,
        "epsilon_per_query": 0.5,
        "min_cell_size": 10,
    },
}


@dataclass
class Party:
    """A caller with its id and a bearer header."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_account(
    runtime: Runtime, client: FlaskClient, role: Role, username: str, subject_id: str | None = None
) -> Party:
    with transaction(runtime.sessions) as session:
        account = create_account(
            session, username=username, role=role, password=PASSWORD, subject_id=subject_id, actor=ADMIN
        )
        account_id = account.id
    response = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return Party(account_id, response.get_json()["access_token"])


def make_operator(runtime: Runtime, client: FlaskClient, name: str, credit_code: str) -> Party:
    with transaction(runtime.sessions) as session:
        operator = operator_services.register_operator(
            session,
            name=name,
            credit_code=credit_code,
            license_no="LIC-1",
            qualifications=[],
            actor=ADMIN,
            request_id=None,
        )
        credential, secret = operator_services.issue_credentials(
            session, operator.id, actor=ADMIN, request_id=None
        )
        operator_id, client_id = operator.id, credential.client_id
    response = client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.get_json()
    return Party(operator_id, response.get_json()["access_token"])


@pytest.fixture
def admin(runtime: Runtime, client: FlaskClient) -> Party:
    return make_account(runtime, client, Role.ADMIN, "admin1")


@pytest.fixture
def reviewer(runtime: Runtime, client: FlaskClient) -> Party:
    return make_account(runtime, client, Role.REVIEWER, "reviewer1")


@pytest.fixture
def auditor(runtime: Runtime, client: FlaskClient) -> Party:
    return make_account(runtime, client, Role.AUDITOR, "auditor1")


@pytest.fixture
def operator(runtime: Runtime, client: FlaskClient) -> Party:
    return make_operator(runtime, client, "齐鲁普惠贷科技有限公司", "913701023C5XXXX13C")
