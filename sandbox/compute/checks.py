"""The checks a compute job passes: when it is queued, and again when a worker starts it.

Against the moment of the check: the operator is active; the program is the operator's, approved,
its source still the one approval pinned, and it still compiles under the policy in force; the
contract is the program's own, active, and grants ``compute``; the release asked for is allowed
(exact only where a reviewer allowed it; private only with OUTPUT_BOUNDS, ε within the contract's
per-query cap, partitions in range; mock, over mock rows, for no subject and no ε); the
parameters are small JSON; a subject-scoped job's subject is well formed and has consented
(``compute:<program id>``); a call is left in today's quota and the ε in the budget.

At queue time the quota and the budget are only looked at; at start they are spent, atomically
(:mod:`authz.usage`), in the start's transaction. A job re-queued after its worker was lost was
charged at its first start and is not charged again (nothing of it was released).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy.orm import Session

from authz import consent, contracts, usage
from authz.contract_models import EPSILON_SLACK, Authorization, epsilon_problem
from authz.errors import BudgetExhausted
from catalog import Catalog
from core.accepted_codes import subject_problem
from core.errors import Invalid, NotFound
from operators.models import Operator
from operators.services import require_active
from sandbox.compute.compile import CompiledProgram, compile_program, source_sha256
from sandbox.compute.errors import ExactReleaseNotAllowed, ProgramNotApproved, ReleaseRefused
from sandbox.compute.inputs import program_scope
from sandbox.compute.models import Program, ProgramStatus
from sandbox.compute.programs import get_program
from sandbox.compute.release import MIN_PARTITIONS, ReleaseMode
from sandbox.compute.shape import MAX_ABS_INT
from sandbox.engine.errors import OutOfScope, problem

DEFAULT_PARTITIONS = 10
MAX_PARTITIONS = 100  # more would leave each partition too few rows to mean anything
MAX_PARAMS = 32
MAX_PARAMS_BYTES = 4096


class Charge(Enum):
    """What to do with the quota and the budget."""

    LOOK = "look"  # queue time: refuse if nothing is left, spend nothing
    SPEND = "spend"  # first start: spend a call and the ε, atomically
    ALREADY = "already"  # a re-queued job's start: charged before, not again


@dataclass(frozen=True)
class JobRequest:
    """What an operator asks for (or what a queued job asked for)."""

    program_id: str
    authorization_id: str
    params: Any
    release: str | None = None
    epsilon: float | None = None
    partitions: int | None = None
    subject: str | None = None
    consent_id: str | None = None


@dataclass(frozen=True)
class Plan:
    """A job that passed every check: what to run, over what, released how."""

    contract: Authorization
    program: Program
    compiled: CompiledProgram
    scope: dict[str, list[str]]
    release: ReleaseMode
    epsilon: float | None
    partitions: int | None
    params: dict[str, Any]
    subject: str | None
    consent_id: str | None

    @property
    def consent_entry(self) -> str:
        """What a subject's consent must list for this program."""
        return consent_entry(self.program.id)


def consent_entry(program_id: str) -> str:
    """``compute:<program id>``: the consent entry that allows a subject-scoped job of a program."""
    return consent.COMPUTE_PREFIX + program_id


def check_params(params: Any) -> dict[str, Any]:
    """The parameters as given, if a JSON object of at most 32 short keys and 4 KiB."""
    if not isinstance(params, Mapping):
        raise Invalid("params must be an object", details=[problem("params", "a JSON object")])
    if len(params) > MAX_PARAMS or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in params):
        raise Invalid(
            "params has too many or bad keys",
            details=[problem("params", f"at most {MAX_PARAMS} keys of 1-64 characters")],
        )
    try:
        size = len(json.dumps(params, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError):
        raise Invalid("params must be JSON", details=[problem("params", "JSON values only")]) from None
    if not _exact_numbers(params):
        raise Invalid(
            "params holds an integer too large",
            details=[problem("params", f"integers within ±{MAX_ABS_INT} (a double holds them exactly)")],
        )
    if size > MAX_PARAMS_BYTES:
        raise Invalid(
            "params is too large", details=[problem("params", f"at most {MAX_PARAMS_BYTES} bytes as JSON")]
        )
    return dict(params)


def _exact_numbers(value: Any) -> bool:
    """No integer beyond what a double holds exactly, anywhere in ``value``."""
    if isinstance(value, Mapping):
        return all(_exact_numbers(item) for item in value.values())
    if isinstance(value, list):
        return all(_exact_numbers(item) for item in value)
    return not (type(value) is int and abs(value) > MAX_ABS_INT)


def approved(program: Program) -> CompiledProgram:
    """The program compiled again, if approved and still the source its approval pinned."""
    if program.status != ProgramStatus.APPROVED.value:
        raise ProgramNotApproved(f"the program is {program.status}")
    if program.approved_sha256 is None or source_sha256(program.source) != program.approved_sha256:
        raise ProgramNotApproved("the program's source does not match the sha256 its approval pinned")
    return compile_program(program.source)


def _contract(session: Session, program: Program, authorization_id: str, now: datetime) -> Authorization:
    if authorization_id != program.authorization_id:
        raise Invalid(
            "the program runs only under the authorization it was approved for",
            details=[problem("authorization_id", "the program's own authorization")],
        )
    contract = contracts.get_contract(session, authorization_id, operator_id=program.operator_id)
    contracts.check_active(contract, now)
    if not contract.allows_operation("compute"):
        raise OutOfScope(
            "the authorization does not grant compute", details=[problem("operations", "compute")]
        )
    return contract


def _release(
    request: JobRequest, program: Program, compiled: CompiledProgram, contract: Authorization
) -> tuple[ReleaseMode, float | None, int | None]:
    try:
        mode = ReleaseMode(request.release or ReleaseMode.PRIVATE.value)
    except ValueError:
        raise Invalid("unknown release", details=[problem("release", "private, exact or mock")]) from None
    if mode is not ReleaseMode.PRIVATE:
        # Given with an exact release they would be ignored: the client meant a private one.
        given = [name for name in ("epsilon", "partitions") if getattr(request, name) is not None]
        if given:
            what = "a mock run" if mode is ReleaseMode.MOCK else "an exact release"
            raise Invalid(
                f"{what} takes no epsilon or partitions",
                details=[problem(name, "only for a private release") for name in given],
            )
    if mode is ReleaseMode.MOCK:
        given = [name for name in ("subject", "consent_id") if getattr(request, name) is not None]
        if given:  # its rows are made up: no subject's, and no consent is needed for them
            raise Invalid(
                "a mock run takes no subject",
                details=[problem(name, "only for a job over real rows") for name in given],
            )
        return mode, None, None
    if mode is ReleaseMode.EXACT:
        if not program.exact_release_allowed:
            raise ExactReleaseNotAllowed("no reviewer allowed this program exact release")
        return mode, None, None
    if compiled.output_bounds is None:
        raise ReleaseRefused(
            "private release needs the program to declare OUTPUT_BOUNDS",
            details=[problem("source", "declare OUTPUT_BOUNDS for every output")],
        )
    epsilon = contract.epsilon_per_query if request.epsilon is None else request.epsilon
    found = epsilon_problem(epsilon, contract.epsilon_per_query)
    if found is not None:
        raise Invalid("epsilon is out of range", details=[found])
    partitions = DEFAULT_PARTITIONS if request.partitions is None else request.partitions
    if (
        isinstance(partitions, bool)
        or not isinstance(partitions, int)
        or not MIN_PARTITIONS <= partitions <= MAX_PARTITIONS
    ):
        raise Invalid(
            "partitions is out of range",
            details=[problem("partitions", f"an integer from {MIN_PARTITIONS} to {MAX_PARTITIONS}")],
        )
    return mode, float(epsilon), partitions


def _charge(
    session: Session, contract: Authorization, epsilon: float | None, charge: Charge, now: datetime
) -> None:
    if charge is Charge.SPEND:
        usage.spend_call(session, contract.id, now=now)
        if epsilon is not None:
            usage.spend_epsilon(session, contract.id, epsilon)
    elif charge is Charge.LOOK:
        if usage.usage(session, contract, now)["calls_today"] >= contract.daily_quota:
            raise usage.quota_exceeded(contract.daily_quota, now)
        if epsilon is not None and contract.epsilon_spent + epsilon > contract.epsilon_total + EPSILON_SLACK:
            raise BudgetExhausted(
                f"spending ε={epsilon} would exceed the budget of ε={contract.epsilon_total}"
            )


def plan_job(
    session: Session,
    catalog: Catalog,
    request: JobRequest,
    *,
    operator_id: str,
    now: datetime,
    charge: Charge,
) -> Plan:
    """Every check of the module docstring, in order; the first refusal is raised."""
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound("no such operator")
    require_active(operator)
    program = get_program(session, request.program_id, operator_id=operator_id)
    contract = _contract(session, program, request.authorization_id, now)
    compiled = approved(program)
    scope = program_scope(catalog, contract)
    if not scope:
        raise OutOfScope(
            "the authorization gives a program no field (fields for templates only are never given)",
            details=[problem("datasets", "no field a program may read")],
        )
    mode, epsilon, partitions = _release(request, program, compiled, contract)
    params = check_params(request.params)
    found = None
    if request.subject is None and request.consent_id is not None:
        raise Invalid(
            "a consent is only for a subject-scoped job",
            details=[problem("consent_id", "give it with the subject it is about")],
        )
    if request.subject is not None:
        if (wrong := subject_problem(session, request.subject)) is not None:
            raise Invalid("the subject is not well formed", details=[problem("subject", wrong)])
        found = consent.require_consent(
            session,
            subject_id=request.subject,
            operator_id=operator_id,
            template=consent_entry(program.id),
            consent_id=request.consent_id,
            now=now,
        )
    _charge(session, contract, epsilon, charge, now)
    return Plan(
        contract=contract,
        program=program,
        compiled=compiled,
        scope=scope,
        release=mode,
        epsilon=epsilon,
        partitions=partitions,
        params=params,
        subject=request.subject,
        consent_id=found.id if found is not None else None,
    )
