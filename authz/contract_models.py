"""Tables of authorization contracts and their daily call counters.

An authorization's lifecycle is stored as ``pending`` → ``approved`` | ``rejected``, and
``approved`` → ``revoked``. ``expired`` is never stored: it is what an approved contract *is*
once its validity has run out, so it cannot drift from the clock (:meth:`effective_status`).
The limits are columns, not JSON, so the database itself refuses an overspent budget.

The second half of the module holds the rules a valid request obeys (catalog scope, operations,
disclosure ceilings), returned as a list of every problem found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from authz.errors import ContractInvalid
from catalog import Catalog, Classification, Dataset
from core.db import Base, UTCDateTime
from core.text import line_problem

# Float sums of ε drift by ulps (ten spends of 0.1 add up to 0.9999999999999999); this slack lets
# a budget be spent exactly and is far below any ε a query may spend.
EPSILON_SLACK = 1e-9
# The least ε a contract may allow per query or in all, and a job may spend. Far below it
# diffprivlib's mechanisms fail outright (a share of ε that rounds to 0, a noise scale that
# overflows to infinity), and well before that the noise drowns any answer.
EPSILON_MIN = 0.001


class AuthorizationStatus(StrEnum):
    """Where a contract is in its lifecycle; ``EXPIRED`` is derived, never stored."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"


STORED_STATUSES = (
    AuthorizationStatus.PENDING,
    AuthorizationStatus.APPROVED,
    AuthorizationStatus.REJECTED,
    AuthorizationStatus.REVOKED,
)


class ContractRules:
    """What a contract allows at a moment: shared by the table row and :class:`ContractTerms`."""

    if TYPE_CHECKING:
        status: str
        valid_from: datetime | None
        valid_until: datetime | None
        operations: list[str]
        datasets: dict[str, list[str]]

    def effective_status(self, now: datetime) -> AuthorizationStatus:
        """The status as of ``now``: an approved contract past its validity is ``expired``."""
        status = AuthorizationStatus(self.status)
        if (
            status is AuthorizationStatus.APPROVED
            and self.valid_until is not None
            and now >= self.valid_until
        ):
            return AuthorizationStatus.EXPIRED
        return status

    def allows_operation(self, operation: str) -> bool:
        """Whether ``operation`` (``aggregate``, ``compute`` or ``verify:<template>``) is granted."""
        return operation in self.operations

    def allowed_fields(self, dataset: str) -> list[str]:
        """The fields of ``dataset`` this contract covers; empty when the dataset is not covered."""
        return list(self.datasets.get(dataset, []))


@dataclass(frozen=True)
class ContractTerms(ContractRules):
    """The columns of a contract a verification checks, read without loading the row as an object."""

    id: str
    operator_id: str
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    operations: list[str]
    datasets: dict[str, list[str]]
    consent_required: bool
    daily_quota: int


class Authorization(Base, ContractRules):
    """One operator's written authorization: purpose, scope, operations, limits, validity."""

    __tablename__ = "authorizations"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s.value}'" for s in STORED_STATUSES)),
            name="status_known",
        ),
        CheckConstraint("valid_days >= 1", name="valid_days_positive"),
        CheckConstraint("daily_quota >= 1", name="daily_quota_positive"),
        CheckConstraint("min_cell_size >= 1", name="min_cell_size_positive"),
        CheckConstraint("epsilon_per_query > 0 AND epsilon_per_query <= epsilon_total", name="epsilon_caps"),
        CheckConstraint(
            f"epsilon_spent >= 0 AND epsilon_spent <= epsilon_total + {EPSILON_SLACK}",
            name="epsilon_within_budget",
        ),
        CheckConstraint(
            "status IN ('pending', 'rejected') OR (valid_from IS NOT NULL AND valid_until IS NOT NULL)",
            name="validity_when_approved",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(500))
    datasets: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    operations: Mapped[list[str]] = mapped_column(JSON)
    valid_days: Mapped[int] = mapped_column(Integer)
    daily_quota: Mapped[int] = mapped_column(Integer)
    epsilon_total: Mapped[float] = mapped_column(Float)
    epsilon_per_query: Mapped[float] = mapped_column(Float)
    min_cell_size: Mapped[int] = mapped_column(Integer)
    consent_required: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default=AuthorizationStatus.PENDING.value)
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decision_comment: Mapped[str | None] = mapped_column(String(1000))
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def limits(self) -> dict[str, Any]:
        """The limits in the request's vocabulary."""
        return {
            "valid_days": self.valid_days,
            "daily_quota": self.daily_quota,
            "epsilon_total": self.epsilon_total,
            "epsilon_per_query": self.epsilon_per_query,
            "min_cell_size": self.min_cell_size,
        }


class AuthorizationUsage(Base):
    """Calls made under one authorization on one day (Asia/Shanghai), bumped atomically."""

    __tablename__ = "authorization_usage"
    __table_args__ = (CheckConstraint("calls >= 0", name="calls_nonnegative"),)

    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0)


# --- The rules a contract obeys -------------------------------------------------------------------
# Kept beside the table, as catalog.models keeps each policy object's meaning checks beside it.
# Inputs are typed ``object``: they arrive as parsed JSON, and every shape is checked here.

Problem = dict[str, str]

LIMIT_NAMES = ("valid_days", "daily_quota", "epsilon_total", "epsilon_per_query", "min_cell_size")
# A reviewer may move these limits down only; ``min_cell_size`` (the rest) up only.
LOWER_IS_TIGHTER = frozenset({"valid_days", "daily_quota", "epsilon_total", "epsilon_per_query"})
PLAIN_OPERATIONS = ("aggregate", "compute")
VERIFY_PREFIX = "verify:"
MAX_PURPOSE = 500
MAX_CELL_SIZE = 1_000_000  # a sanity cap: no group that large is "small"
# Longer lists are refused whole, so a hostile request cannot buy an answer of a million problems.
MAX_ITEMS = 100


@dataclass(frozen=True)
class ContractRequest:
    """A request that passed every rule, normalized: limits complete, consent decided."""

    purpose: str
    datasets: dict[str, list[str]]
    operations: list[str]
    limits: dict[str, int | float]
    consent_required: bool


def problem(field: str, message: str) -> Problem:
    """One validation problem in the API's ``details`` shape."""
    return {"field": field, "message": message}


def epsilon_problem(value: object, high: float, field: str = "epsilon") -> Problem | None:
    """Why ``value`` is not an ε from ``EPSILON_MIN`` to ``high`` (a finite JSON number), or None."""
    epsilon = number(value)
    if epsilon is not None and math.isfinite(epsilon) and EPSILON_MIN <= epsilon <= high:
        return None
    return problem(field, f"a finite number from {EPSILON_MIN} to {high}")


def number(value: object) -> float | None:
    """``value`` as a float if it is a JSON number (not a boolean) that a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range
        return None


def _label(name: object) -> str:
    # Names are echoed in problem paths; a hostile one must not bloat the answer or the log.
    return str(name)[:64]


def parse_request(
    catalog: Catalog,
    *,
    purpose: object,
    datasets: object,
    operations: object,
    limits: object,
    consent_required: object,
) -> ContractRequest:
    """The validated request, or :class:`ContractInvalid` listing every problem."""
    problems = request_problems(
        catalog,
        purpose=purpose,
        datasets=datasets,
        operations=operations,
        limits=limits,
        consent_required=consent_required,
    )
    if problems:
        raise ContractInvalid(f"{len(problems)} problem(s) with the authorization request", details=problems)
    scope = cast(dict[str, list[str]], datasets)
    given = cast(Mapping[str, int | float], limits)
    ops = cast(list[str], operations)
    complete = {name: given[name] for name in LIMIT_NAMES if name in given}
    complete.setdefault("min_cell_size", _cell_floor(catalog, scope))
    return ContractRequest(
        purpose=cast(str, purpose).strip(),
        datasets={name: list(fields) for name, fields in scope.items()},
        operations=list(ops),
        limits=complete,
        consent_required=bool(consent_required) or _consent_templates(catalog, ops) != [],
    )


def request_problems(
    catalog: Catalog,
    *,
    purpose: object,
    datasets: object,
    operations: object,
    limits: object,
    consent_required: object,
) -> list[Problem]:
    """Every problem of a request against the catalog and its disclosure ceilings."""
    out: list[Problem] = []
    if (found := line_problem(purpose, MAX_PURPOSE)) is not None:
        out.append(problem("purpose", found))
    scope = {"datasets": datasets, "operations": operations, "limits": limits}
    out.extend(scope_problems(catalog, **scope, consent_required=consent_required))
    return out


def scope_problems(
    catalog: Catalog,
    *,
    datasets: object,
    operations: object,
    limits: object,
    consent_required: object,
) -> list[Problem]:
    """The problems of a request's scope and limits: what an approval checks again (not the
    purpose, which the reviewer cannot change and a contract stored under older rules keeps)."""
    out = _dataset_problems(catalog, datasets)
    out.extend(_operation_problems(catalog, operations, datasets))
    out.extend(_limit_problems(catalog, limits, datasets))
    out.extend(_consent_problems(catalog, operations, consent_required))
    return out


def _dataset_problems(catalog: Catalog, datasets: object) -> list[Problem]:
    if not isinstance(datasets, Mapping) or not 1 <= len(datasets) <= MAX_ITEMS:
        return [problem("datasets", f"an object naming 1-{MAX_ITEMS} datasets and their fields")]
    out: list[Problem] = []
    for name, fields in datasets.items():
        path = f"datasets.{_label(name)}"
        if name not in catalog.datasets:
            out.append(problem(path, "no such dataset"))
        elif not isinstance(fields, list) or not 1 <= len(fields) <= MAX_ITEMS:
            out.append(problem(path, f"a list of 1-{MAX_ITEMS} field names"))
        else:
            out.extend(_field_problems(catalog.dataset(name), fields, path))
    return out


def _field_problems(dataset: Dataset, fields: list[object], path: str) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for index, name in enumerate(fields):
        at = f"{path}[{index}]"
        if not isinstance(name, str) or not dataset.has_field(name):
            out.append(problem(at, f"no such field in dataset {dataset.name}"))
        elif name in seen:
            out.append(problem(at, f"field {name} is listed twice"))
        elif dataset.field(name).classification is Classification.FORBIDDEN:
            out.append(problem(at, f"field {name} is forbidden"))
        elif not dataset.field(name).uses:
            # Deny by default: a field policy gives no use would reach programs for no reason.
            out.append(problem(at, f"field {name} has no allowed use"))
        if isinstance(name, str):
            seen.add(name)
    return out


def _operation_problems(catalog: Catalog, operations: object, datasets: object) -> list[Problem]:
    if not isinstance(operations, list) or not 1 <= len(operations) <= MAX_ITEMS:
        return [problem("operations", f"a list of 1-{MAX_ITEMS} operations")]
    scope = datasets if isinstance(datasets, Mapping) else {}
    out: list[Problem] = []
    for index, operation in enumerate(operations):
        at = f"operations[{index}]"
        if not isinstance(operation, str):
            out.append(problem(at, "an operation is a string"))
        elif operations.index(operation) != index:
            out.append(problem(at, f"{_label(operation)} is listed twice"))
        elif operation.startswith(VERIFY_PREFIX):
            out.extend(_template_problems(catalog, operation.removeprefix(VERIFY_PREFIX), scope, at))
        elif operation not in PLAIN_OPERATIONS:
            out.append(problem(at, "one of aggregate, compute, verify:<template>"))
    return out


def _template_problems(catalog: Catalog, name: str, scope: Mapping[Any, Any], at: str) -> list[Problem]:
    if name not in catalog.templates:
        return [problem(at, f"no such verification template {_label(name)}")]
    template = catalog.template(name)
    granted = scope.get(template.dataset)
    granted = granted if isinstance(granted, list) else []
    needed = [catalog.dataset(template.dataset).key, *template.touched_fields()]
    missing = [field for field in dict.fromkeys(needed) if field not in granted]
    if not missing:
        return []
    return [problem(at, f"template {name} needs fields {', '.join(missing)} of dataset {template.dataset}")]


def _limit_problems(catalog: Catalog, limits: object, datasets: object) -> list[Problem]:
    if not isinstance(limits, Mapping):
        return [problem("limits", "an object of limits")]
    ceiling = catalog.disclosure
    out = [problem(f"limits.{_label(name)}", "unknown limit") for name in limits if name not in LIMIT_NAMES]
    out.extend(_integer_problems(limits, "valid_days", 1, ceiling.valid_days_max))
    out.extend(_integer_problems(limits, "daily_quota", 1, ceiling.daily_quota_max))
    out.extend(_epsilon_problems(limits, "epsilon_total", ceiling.epsilon_total_max))
    out.extend(_epsilon_problems(limits, "epsilon_per_query", ceiling.epsilon_per_query_max))
    total, per_query = number(limits.get("epsilon_total")), number(limits.get("epsilon_per_query"))
    if total is not None and per_query is not None and per_query > total:
        out.append(problem("limits.epsilon_per_query", "may not exceed epsilon_total"))
    if "min_cell_size" in limits:
        floor = _cell_floor(catalog, datasets if isinstance(datasets, Mapping) else {})
        out.extend(_integer_problems(limits, "min_cell_size", floor, MAX_CELL_SIZE, optional=True))
    return out


def _integer_problems(
    limits: Mapping[Any, Any], name: str, low: int, high: int, *, optional: bool = False
) -> list[Problem]:
    if optional and name not in limits:
        return []  # absent takes the policy floor; an explicit null is a problem like any wrong type
    value = limits.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return [problem(f"limits.{name}", f"an integer from {low} to {high}")]
    return []


def _epsilon_problems(limits: Mapping[Any, Any], name: str, high: float) -> list[Problem]:
    found = epsilon_problem(limits.get(name), high, f"limits.{name}")
    return [found] if found else []


def _cell_floor(catalog: Catalog, datasets: Mapping[Any, Any]) -> int:
    """The policy's minimum cell size over the requested (known) datasets."""
    floors = [catalog.min_cell_size(name) for name in datasets if name in catalog.datasets]
    return max(floors, default=catalog.disclosure.min_cell_size)


def _consent_templates(catalog: Catalog, operations: object) -> list[str]:
    """The requested templates that require the subject's consent."""
    if not isinstance(operations, list):
        return []
    names = [
        op.removeprefix(VERIFY_PREFIX)
        for op in operations
        if isinstance(op, str) and op.startswith(VERIFY_PREFIX)
    ]
    return [
        name
        for name in dict.fromkeys(names)
        if name in catalog.templates and catalog.template(name).consent_required
    ]


def _consent_problems(catalog: Catalog, operations: object, consent_required: object) -> list[Problem]:
    if consent_required is None:
        return []
    if not isinstance(consent_required, bool):
        return [problem("consent_required", "true or false")]
    needing = _consent_templates(catalog, operations)
    if not consent_required and needing:
        return [problem("consent_required", f"templates {', '.join(needing)} require the subject's consent")]
    return []
