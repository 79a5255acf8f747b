"""Plain functions that insert real rows for tests: no mocks, no services, no audit events.

Each takes the session and returns the flushed row; the caller commits (or not) as the test needs.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from authz.consent import Consent
from authz.contract_models import Authorization, AuthorizationStatus
from core.identifiers import is_valid_uscc, org_check_char, resident_id_check_char, uscc_check_char
from operators.models import Operator, OperatorStatus

# 10:00 in Jinan (Asia/Shanghai): the middle of a bureau working day.
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

TAX_SCOPE = {"enterprise_tax": ["credit_code", "year", "annual_tax", "industry"]}
TAX_OPERATIONS = ["verify:tax_paid_at_least", "aggregate"]


def uscc(raw: str) -> str:
    """A unified social credit code with its check characters right, made from ``raw``.

    ``raw`` is 18 characters shaped like a code, whose check characters may be anything:
    registration and division (the first 8) are kept, the organization body becomes characters
    11-18 (distinct raw codes stay distinct), and both check characters are computed.
    """
    if is_valid_uscc(raw):
        return raw
    body = raw[10:18].replace("Z", "Y")
    first17 = raw[:8] + body + org_check_char(body)
    return first17 + uscc_check_char(first17)


def resident_id(raw: str) -> str:
    """``raw`` (an ID number shaped, with a real birth date) with its check character right."""
    return raw[:17] + resident_id_check_char(raw[:17])


def credit_code() -> str:
    """A fresh unified social credit code, check characters right."""
    return uscc(f"91370100MA{secrets.token_hex(4).upper()}")


def make_operator(
    session: Session,
    *,
    name: str = "齐鲁普惠金融服务有限公司",
    status: OperatorStatus = OperatorStatus.ACTIVE,
    now: datetime = NOW,
) -> Operator:
    """An operator row with a unique credit code."""
    operator = Operator(
        id=str(uuid.uuid4()),
        name=name,
        credit_code=credit_code(),
        license_no=f"SD-DATA-{secrets.token_hex(3)}",
        qualifications=["loan_platform"],
        status=status.value,
        created_at=now,
    )
    session.add(operator)
    session.flush()
    return operator


def make_contract(
    session: Session,
    *,
    operator_id: str,
    status: AuthorizationStatus = AuthorizationStatus.APPROVED,
    datasets: dict[str, list[str]] | None = None,
    operations: list[str] | None = None,
    valid_days: int = 30,
    daily_quota: int = 100,
    epsilon_total: float = 1.0,
    epsilon_per_query: float = 0.5,
    min_cell_size: int = 10,
    consent_required: bool = True,
    now: datetime = NOW,
) -> Authorization:
    """An authorization row; approved ones are valid from ``now`` for ``valid_days``."""
    decided = status is not AuthorizationStatus.PENDING
    validity = status in (AuthorizationStatus.APPROVED, AuthorizationStatus.REVOKED)
    contract = Authorization(
        id=str(uuid.uuid4()),
        operator_id=operator_id,
        purpose="小微企业信贷准入核验 / small-business loan screening",
        datasets=dict(datasets or TAX_SCOPE),
        operations=list(operations or TAX_OPERATIONS),
        valid_days=valid_days,
        daily_quota=daily_quota,
        epsilon_total=epsilon_total,
        epsilon_per_query=epsilon_per_query,
        min_cell_size=min_cell_size,
        consent_required=consent_required,
        status=status.value,
        epsilon_spent=0.0,
        requested_at=now,
        decided_at=now if decided else None,
        decided_by="reviewer-1" if decided else None,
        valid_from=now if validity else None,
        valid_until=now + timedelta(days=valid_days) if validity else None,
        revoked_at=now if status is AuthorizationStatus.REVOKED else None,
        updated_at=now,
    )
    session.add(contract)
    session.flush()
    return contract


def make_consent(
    session: Session,
    *,
    subject_id: str,
    operator_id: str,
    templates: list[str] | None = None,
    valid_days: int = 30,
    revoked: bool = False,
    now: datetime = NOW,
) -> Consent:
    """A consent row granted at ``now``."""
    consent = Consent(
        id=str(uuid.uuid4()),
        subject_id=subject_id,
        operator_id=operator_id,
        purpose="贷款审批 / loan application",
        templates=list(templates or ["tax_paid_at_least"]),
        granted_at=now,
        valid_until=now + timedelta(days=valid_days),
        revoked_at=now if revoked else None,
    )
    session.add(consent)
    session.flush()
    return consent
