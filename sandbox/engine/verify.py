"""Verifications: one template about one subject, checked at the moment it runs, answered and sealed.

Order of checks, each against the contract as it is now: the contract is the operator's own
(another's reads as missing), approved and within its validity; the template exists, is granted
(``verify:<template>``) and every field it reads is in the contract's scope; the parameters and the
subject are well formed; the subject's consent is valid when the template or the contract asks for
it. Only then is the data read (one indexed lookup), and its answer released only if a call is
left in today's quota (spent atomically, with the contract required active still).

The checks that only read, and the lookup, run outside the write transaction; the consent read
again, the quota spend (which re-requires an active contract), the answer's audit event, the
subject's access record and the stored seal are then one control-database transaction: all of
them or none. A refusal for lack of consent is itself shown to the subject (an access with
outcome ``denied``), written on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from audit import Actor, AuditAction, Outcome
from authz import consent, contracts, usage
from authz.contract_models import VERIFY_PREFIX, ContractRules, ContractTerms
from authz.errors import ConsentRequired
from catalog import Template
from core.accepted_codes import subject_problem
from core.ids import time_ordered_id
from core.prepared import end_reads
from sandbox.engine.errors import JobInvalid, OutOfScope, label, problem
from sandbox.engine.models import ResultKind
from sandbox.engine.params import check_params, json_ready
from sandbox.engine.sealing import Release, Released, release
from sandbox.engine.templates import COMPILED
from sandbox.runtime import Runtime


@dataclass(frozen=True)
class VerificationRequest:
    """What an operator asks: a template about a subject, under a contract."""

    authorization_id: str
    template: str
    subject: str
    params: Any
    consent_id: str | None = None


@dataclass(frozen=True)
class Verification:
    """A sealed answer."""

    result: bool | str
    template: str
    subject: str
    params: dict[str, Any]
    authorization_id: str
    released: Released

    def as_json(self) -> dict[str, Any]:
        """The API's response body."""
        return {
            "result": self.result,
            "template": self.template,
            "subject": self.subject,
            "params": self.params,
            "authorization_id": self.authorization_id,
            "job_id": self.released.job_id,
            "issued_at": self.released.payload["issued_at"],
            "audit_seq": self.released.audit_seq,
            "seal": self.released.seal,
        }


def _template(runtime: Runtime, contract: ContractRules, name: str) -> Template:
    """The template, if it exists, is granted and reads only fields in the contract's scope."""
    template = runtime.catalog.templates.get(name)
    if template is None:
        raise JobInvalid(
            "no such verification template", details=[problem("template", f"{label(name)} is not a template")]
        )
    if not contract.allows_operation(VERIFY_PREFIX + name):
        raise OutOfScope(
            f"the authorization does not grant verify:{name}",
            details=[problem("template", f"verify:{name} is not among the authorization's operations")],
        )
    dataset = runtime.catalog.dataset(template.dataset)
    granted = set(contract.allowed_fields(template.dataset))
    missing = [f for f in dict.fromkeys([dataset.key, *template.touched_fields()]) if f not in granted]
    if missing:
        raise OutOfScope(
            f"the authorization does not cover fields {', '.join(missing)} of {template.dataset}",
            details=[problem(f"datasets.{template.dataset}", f"needs {', '.join(missing)}")],
        )
    return template


def _check_subject(conn: Connection, runtime: Runtime, template: Template, subject: str) -> None:
    """The subject is an id of the kind the template's dataset is keyed by, its checks right (or a
    credit code the bureau accepts though it does not conform: read only when a check fails)."""
    kind = runtime.catalog.dataset(template.dataset).key_field.format  # a StrEnum: "uscc", …
    if (found := subject_problem(conn, subject, kind)) is not None:
        raise JobInvalid("the subject is not well formed", details=[problem("subject", found)])


def run_verification(
    runtime: Runtime,
    request: VerificationRequest,
    *,
    conn: Connection,
    operator_id: str,
    operator_name: str,
    actor: Actor,
    request_id: str | None,
) -> Verification:
    """Check, answer, record and seal one verification; raise the first refusal found.

    ``conn`` is a control-database connection outside any transaction (the request's
    own), and ``operator_name`` the operator's name as the request's authentication read it. The
    checks and the lookup read outside any transaction, one statement each, so on SQLite they run
    beside writers instead of queueing for the write lock; the spend and the records are then one
    short write transaction. It reads the consent again and the spend requires the contract to be
    active still (see :func:`authz.usage.spend_call`), so a revocation of either that commits
    between the two wins.
    """
    job_id = time_ordered_id()
    now = runtime.clock()
    try:
        try:
            contract, template, params, grant = _check(conn, runtime, request, operator_id, now)
        finally:
            end_reads(conn)
        compiled = COMPILED.get(runtime.catalog, template.name)
        shown = json_ready(params)
        # The lookup runs after every check that reads and before the write lock is taken (on
        # SQLite one writer at a time): what it finds is released only if the spend below succeeds.
        stores = runtime.stores
        with stores.reading(stores.lookup, [(compiled.dataset, compiled.fields)]) as data:
            n_rows, value = compiled.lookup(data, request.subject, params)
        result = compiled.answer(n_rows, value, params)
        with conn.begin():
            if grant is not None:  # a revocation that committed since the check wins
                consent.require_still_valid(conn, grant, now=now)
            usage.spend_call(conn, contract.id, now=now, daily_quota=contract.daily_quota)
            _record_access(conn, runtime, request, job_id, operator_id, operator_name, Outcome.SUCCESS)
            released = release(
                conn,
                Release(
                    kind=ResultKind.VERIFICATION,
                    job_id=job_id,
                    operator_id=operator_id,
                    authorization_id=contract.id,
                    answer={
                        "template": template.name,
                        "subject": request.subject,
                        "params": shown,
                        "result": result,
                    },
                    action=AuditAction.VERIFICATION_RUN,
                    # The subject's id stays out of the permanent log (as for consents); the job id
                    # links the event to the subject's access record and to the seal, which both name it.
                    details={"template": template.name, "params": shown, "result": result},
                ),
                keys_dir=runtime.settings.keys_dir,
                actor=actor,
                request_id=request_id,
                clock=runtime.clock,
            )
        return Verification(
            result=result,
            template=template.name,
            subject=request.subject,
            params=shown,
            authorization_id=contract.id,
            released=released,
        )
    except ConsentRequired:
        with conn.begin():  # the subject sees the refused check too
            _record_access(conn, runtime, request, job_id, operator_id, operator_name, Outcome.DENIED)
        raise


def _check(
    conn: Connection,
    runtime: Runtime,
    request: VerificationRequest,
    operator_id: str,
    now: datetime,
) -> tuple[ContractTerms, Template, dict[str, Any], consent.ConsentGrant | None]:
    """Every check that reads: the contract, the template and its fields, the input, the consent."""
    contract = contracts.contract_terms(conn, request.authorization_id, operator_id=operator_id)
    contracts.check_active(contract, now)
    template = _template(runtime, contract, request.template)
    params = check_params(template, request.params)
    _check_subject(conn, runtime, template, request.subject)
    grant = None
    if template.consent_required or contract.consent_required:
        grant = consent.require_consent(
            conn,
            subject_id=request.subject,
            operator_id=operator_id,
            template=template.name,
            consent_id=request.consent_id,
            now=now,
        )
    return contract, template, params, grant


def _record_access(
    conn: Connection,
    runtime: Runtime,
    request: VerificationRequest,
    job_id: str,
    operator_id: str,
    operator_name: str | None,
    outcome: Outcome,
) -> None:
    """Show the subject the check, answered or refused for lack of its consent."""
    consent.record_access(
        conn,
        subject_id=request.subject,
        operator_id=operator_id,
        template=request.template,
        authorization_id=request.authorization_id,
        job_id=job_id,
        outcome=outcome,
        clock=runtime.clock,
        operator_name=operator_name,
    )
