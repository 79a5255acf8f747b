"""The reviewer's pages: the queue, a contract with its fields, limits and usage, and decisions."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, g, render_template, request

from authz import contracts
from authz.contract_models import LIMIT_NAMES, AuthorizationStatus
from authz.permissions import Permission
from authz.usage import usage
from core.db import transaction
from core.errors import SandboxError
from sandbox.compute import programs
from sandbox.compute.models import ProgramStatus
from sandbox.services import console as console_service
from sandbox.web.console import done, page, refused, runtime, user, whole_number

STATUSES = [s.value for s in AuthorizationStatus]
REVIEW = Permission.AUTHORIZATIONS_REVIEW


@page("/review", permission=Permission.AUTHORIZATIONS_REVIEW)
def review_queue() -> str:
    """Pending contracts and programs first; then every contract in a chosen status."""
    rt = runtime()
    status = request.args.get("status", "approved")
    status = status if status in STATUSES else "approved"
    with rt.sessions() as session:
        now = rt.clock()
        pending = contracts.list_contracts(session, operator_id=None, status="pending", now=now)
        others = contracts.list_contracts(session, operator_id=None, status=status, now=now)
        names = console_service.operator_names(session)
        waiting = programs.list_programs(session, operator_id=None, status=ProgramStatus.PENDING_REVIEW)
        return render_template(
            "reviewer/queue.html",
            pending=pending,
            pending_programs=waiting,
            others=others,
            status=status,
            statuses=STATUSES,
            names=names,
            now=now,
        )


@page("/review/contracts/<contract_id>", permission=Permission.AUTHORIZATIONS_READ_ALL)
def review_contract(contract_id: str) -> str:
    """Purpose, datasets and fields with classification, limits beside policy's, usage, decisions."""
    rt = runtime()
    with rt.sessions() as session:
        contract = contracts.get_contract(session, contract_id, operator_id=None)
        now = rt.clock()
        return render_template(
            "reviewer/contract.html",
            contract=contract,
            status=contract.effective_status(now).value,
            operator_name=console_service.operator_names(session).get(contract.operator_id, ""),
            fields=console_service.contract_fields(rt.catalog, contract),
            limits=console_service.limits_beside_policy(rt.catalog, contract),
            usage=usage(session, contract, now),
        )


# Numbers as a reviewer types them, in ASCII: ``int`` and ``float`` also read "1_0", other
# scripts' digits ("٣٠") and "nan", which no limit field means.
_DECIMAL = re.compile(r"\A-?[0-9]{1,18}(?:\.[0-9]{1,18})?(?:[eE][-+]?[0-9]{1,3})?\Z")


def _limits_from_form() -> dict[str, Any]:
    """The limits the reviewer changed; text that is not a number goes to the service as given,
    which names the problem."""
    out: dict[str, Any] = {}
    for name in LIMIT_NAMES:
        raw = request.form.get(f"limit_{name}", "").strip()
        if not raw:
            continue
        if name.startswith("epsilon"):
            out[name] = float(raw) if _DECIMAL.match(raw) else raw
        else:
            # ASCII digits as the console reads them (whole_number); a sign is the service's to judge.
            out[name] = int(raw) if whole_number(raw.removeprefix("-"), 18) is not None else raw
    return out


def _common() -> dict[str, Any]:
    rt = runtime()
    return {"actor": user().actor, "request_id": g.request_id, "clock": rt.clock}


@page("/review/contracts/<contract_id>/approve", permission=REVIEW, methods=("POST",))
def review_approve(contract_id: str) -> Response:
    """Approve, optionally tightening the limits."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            contracts.approve(
                session,
                rt.catalog,
                contract_id,
                reviewer_id=user().id,
                comment=request.form.get("comment", "").strip() or None,
                limits=_limits_from_form(),
                **_common(),
            )
    except SandboxError as exc:
        return refused(exc, "web.review_contract", contract_id=contract_id)
    return done("flash.approved", "web.review_contract", contract_id=contract_id)


@page("/review/contracts/<contract_id>/reject", permission=REVIEW, methods=("POST",))
def review_reject(contract_id: str) -> Response:
    """Reject a pending contract with a reason."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            reason = request.form.get("reason", "")
            contracts.reject(session, contract_id, reviewer_id=user().id, reason=reason, **_common())
    except SandboxError as exc:
        return refused(exc, "web.review_contract", contract_id=contract_id)
    return done("flash.rejected", "web.review_contract", contract_id=contract_id)


@page("/review/contracts/<contract_id>/revoke", permission=REVIEW, methods=("POST",))
def review_revoke(contract_id: str) -> Response:
    """Revoke an approved contract with a reason; its next job is refused."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            contracts.revoke(session, contract_id, reason=request.form.get("reason", ""), **_common())
    except SandboxError as exc:
        return refused(exc, "web.review_contract", contract_id=contract_id)
    return done("flash.revoked", "web.review_contract", contract_id=contract_id)
