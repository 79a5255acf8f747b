"""Programs: submitted (compiled and analysed at once), reviewed, read.

Submission compiles the source under the sandbox's policy straight away, so a program that could
never run is refused with every problem and its line (422) and never reaches a reviewer. One that
passes is stored with its sha256 and the reviewer's analysis: the fields it reads, the names it
calls, its loops, whether its output could carry rows, and which of the fields it reads the
contract does not give it. Approval compiles it again (policy may have changed while it waited)
and pins the sha256; a program row never changes afterwards, so a changed source is a new program.

A program belongs to the contract it was submitted under (which must be active and grant
``compute``): the reviewer approves it for that contract's purpose and data, and its jobs run
under that contract only.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Target, record_event
from authz import contracts
from authz.contract_models import Authorization
from catalog import Catalog
from core.clock import Clock, rfc3339, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.text import line_problem, note_text
from sandbox.compute.compile import CompiledProgram, compile_program, source_sha256
from sandbox.compute.errors import ProgramInvalid
from sandbox.compute.inputs import DATASET_FIELD, program_scope
from sandbox.compute.models import Program, ProgramStatus
from sandbox.compute.policy import Problem
from sandbox.engine.errors import OutOfScope, problem

NOT_FOUND_MESSAGE = "no such program"
MAX_NAME = 200
MAX_COMMENT = 1000
MAX_SOURCE_BYTES = 64 * 1024
MAX_LISTED = 500
SYNTAX_ERROR = "SyntaxError: "


def _text(value: object, field: str, limit: int, *, required: bool) -> str | None:
    text, need = note_text(value, limit, required=required)
    if need is not None:
        raise Invalid(f"the {field} is not acceptable", details=[problem(field, need)])
    return text


def _in_prose(found: Problem) -> Problem:
    """A syntax error in prose ("syntax error: …"): Python's ``SyntaxError: …`` reads like a trace."""
    if found.message.startswith(SYNTAX_ERROR):
        return Problem(found.line, "syntax error: " + found.message.removeprefix(SYNTAX_ERROR))
    return found


def _compile(source: str) -> CompiledProgram:
    """:func:`compile_program`, its refusals worded for the API."""
    try:
        return compile_program(source)
    except ProgramInvalid as refused:
        raise ProgramInvalid([_in_prose(problem) for problem in refused.problems]) from None


def _compute_contract(
    session: Session, authorization_id: str, operator_id: str, clock: Clock
) -> Authorization:
    contract = contracts.get_contract(session, authorization_id, operator_id=operator_id)
    contracts.check_active(contract, clock())
    if not contract.allows_operation("compute"):
        raise OutOfScope(
            "the authorization does not grant compute", details=[problem("operations", "compute")]
        )
    return contract


def _reviewer_analysis(catalog: Catalog, contract: Authorization, analysis: dict[str, Any]) -> dict[str, Any]:
    """The runtime's analysis, plus what the program will be given and what it reads beyond it."""
    scope = program_scope(catalog, contract)
    given = {DATASET_FIELD, *(field for fields in scope.values() for field in fields)}
    return {
        **analysis,
        "data_given": scope,
        "fields_outside_contract": [f for f in analysis.get("fields_read", []) if f not in given],
    }


def submit_program(
    session: Session,
    catalog: Catalog,
    *,
    operator_id: str,
    authorization_id: str,
    name: str,
    source: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Program:
    """Compile, hash, analyse and store a program pending review; 422 with every problem's line."""
    contract = _compute_contract(session, authorization_id, operator_id, clock)
    if (found := line_problem(name, MAX_NAME)) is not None:
        raise Invalid("the name is not acceptable", details=[problem("name", found)])
    title = name.strip()
    if isinstance(source, str) and len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise Invalid(
            "the program is too long", details=[problem("source", f"at most {MAX_SOURCE_BYTES} bytes")]
        )
    compiled = _compile(source)
    program = Program(
        id=str(uuid.uuid4()),
        operator_id=operator_id,
        authorization_id=contract.id,
        name=title or "",
        source=compiled.source,
        sha256=compiled.sha256,
        analysis=_reviewer_analysis(catalog, contract, compiled.analysis_dict()),
        status=ProgramStatus.PENDING_REVIEW.value,
        exact_release_allowed=False,
        submitted_at=clock(),
    )
    session.add(program)
    session.flush()
    record_event(
        session,
        action=AuditAction.PROGRAM_SUBMIT,
        actor=actor,
        target=Target("program", program.id),
        request_id=request_id,
        details={
            "operator_id": operator_id,
            "authorization_id": contract.id,
            "name": program.name,
            "sha256": program.sha256,
            "fields_read": program.analysis["fields_read"],
            "output_may_carry_rows": program.analysis["output_may_carry_rows"],
        },
        clock=clock,
    )
    return program


def get_program(session: Session, program_id: str, *, operator_id: str | None) -> Program:
    """The program; with ``operator_id``, only that operator's (another's reads as missing)."""
    program = session.get(Program, program_id)
    if program is None or (operator_id is not None and program.operator_id != operator_id):
        raise NotFound(NOT_FOUND_MESSAGE)
    return program


def list_programs(session: Session, *, operator_id: str | None, status: str | None) -> list[Program]:
    """Programs, newest first, of one operator or all, optionally in one status."""
    query = select(Program).order_by(Program.submitted_at.desc(), Program.id).limit(MAX_LISTED)
    if operator_id is not None:
        query = query.where(Program.operator_id == operator_id)
    if status is not None:
        query = query.where(Program.status == ProgramStatus(status).value)
    return list(session.execute(query).scalars())


def _pending(session: Session, program_id: str, verb: str) -> Program:
    query = (
        select(Program)
        .where(Program.id == program_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    program = session.execute(query).scalar_one_or_none()
    if program is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    if program.status != ProgramStatus.PENDING_REVIEW.value:
        raise Conflict(f"cannot {verb} a program that is {program.status}")
    return program


def approve_program(
    session: Session,
    program_id: str,
    *,
    reviewer_id: str,
    comment: str | None,
    allow_exact_release: bool,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Program:
    """Approve a pending program, pinning its sha256; optionally allow it exact release."""
    program = _pending(session, program_id, "approve")
    text = _text(comment, "comment", MAX_COMMENT, required=False)
    compiled = _compile(program.source)  # policy may have tightened since submission
    if compiled.sha256 != program.sha256 or source_sha256(program.source) != program.sha256:
        raise Conflict("the stored source does not match its sha256; it cannot be approved")
    program.status = ProgramStatus.APPROVED.value
    program.approved_sha256 = program.sha256
    program.exact_release_allowed = bool(allow_exact_release)
    program.decided_at = clock()
    program.decided_by = reviewer_id
    program.decision_comment = text
    session.flush()
    _record_decision(
        session,
        AuditAction.PROGRAM_APPROVE,
        program,
        actor=actor,
        request_id=request_id,
        clock=clock,
        details={"sha256": program.approved_sha256, "exact_release_allowed": program.exact_release_allowed},
    )
    return program


def reject_program(
    session: Session,
    program_id: str,
    *,
    reviewer_id: str,
    comment: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Program:
    """Reject a pending program, with a comment the operator can read."""
    program = _pending(session, program_id, "reject")
    program.decision_comment = _text(comment, "comment", MAX_COMMENT, required=True)
    program.status = ProgramStatus.REJECTED.value
    program.decided_at = clock()
    program.decided_by = reviewer_id
    session.flush()
    _record_decision(
        session,
        AuditAction.PROGRAM_REJECT,
        program,
        actor=actor,
        request_id=request_id,
        clock=clock,
        details={"sha256": program.sha256, "comment": program.decision_comment},
    )
    return program


def _record_decision(
    session: Session,
    action: AuditAction,
    program: Program,
    *,
    actor: Actor,
    request_id: str | None,
    clock: Clock,
    details: dict[str, Any],
) -> None:
    record_event(
        session,
        action=action,
        actor=actor,
        target=Target("program", program.id),
        request_id=request_id,
        details={"operator_id": program.operator_id, "authorization_id": program.authorization_id, **details},
        clock=clock,
    )


def program_view(program: Program, *, with_source: bool = True) -> dict[str, Any]:
    """The program as the API shows it."""
    view: dict[str, Any] = {
        "id": program.id,
        "operator_id": program.operator_id,
        "authorization_id": program.authorization_id,
        "name": program.name,
        "sha256": program.sha256,
        "status": program.status,
        "exact_release_allowed": program.exact_release_allowed,
        "approved_sha256": program.approved_sha256,
        "analysis": program.analysis,
        "submitted_at": rfc3339(program.submitted_at),
        "decided_at": rfc3339(program.decided_at) if program.decided_at else None,
        "decision_comment": program.decision_comment,
    }
    if with_source:
        view["source"] = program.source
    return view
