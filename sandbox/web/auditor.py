"""The auditor's pages: event search with paging, the integrity panel, an event's inclusion proof,
the export, and usage over time as charts."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, g, render_template, request, stream_with_context

from audit import AuditAction, merkle
from audit.actions import Outcome
from audit.queries import EventFilter, search_events
from authz import contracts
from authz.permissions import Permission, allows
from core.clock import as_utc
from core.errors import Invalid, NotFound
from sandbox.services import audit_log, integrity, usage_report
from sandbox.services import console as console_service
from sandbox.web.console import done, page, runtime, user, whole_number

PAGE_SIZE = 50


def _when(name: str) -> datetime | None:
    """A ``datetime-local`` form value, read as UTC (the console shows UTC throughout)."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        return as_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except ValueError:
        raise Invalid(f"{name}: a date and time such as 2025-01-31T08:00") from None


def _cursor() -> int | None:
    raw = request.args.get("cursor", "")
    if not raw:
        return None
    cursor = whole_number(raw, 18)
    if cursor is None:
        raise Invalid("cursor: a sequence number")
    return cursor


SEARCH_TERMS = ("actor", "action", "outcome", "since", "until")


@page("/audit", permission=Permission.AUDIT_READ)
def audit_events() -> str:
    """Search by actor, action, outcome and time range, a page at a time, beside the integrity panel."""
    rt = runtime()
    args = {k: request.args.get(k, "").strip()[:200] for k in ("actor", "action", "outcome")}
    outcome = args["outcome"] if args["outcome"] in {o.value for o in Outcome} else ""
    terms = EventFilter(
        **EventFilter.actor_terms(args["actor"] or None),
        action=args["action"] or None,
        outcome=outcome or None,
        since=_when("since"),
        until=_when("until"),
    )
    with rt.sessions() as session:
        events, next_cursor = search_events(session, terms, limit=PAGE_SIZE, after=_cursor())
    try:
        checkpoint = audit_log.latest(rt)
    except NotFound:
        checkpoint = None
    return render_template(
        "auditor/events.html",
        events=events,
        next_cursor=next_cursor,
        args={
            **args,
            "outcome": outcome,
            "since": request.args.get("since", ""),
            "until": request.args.get("until", ""),
        },
        # What the paging links carry: the search's own terms, never any other parameter given
        # (``url_for`` would take "endpoint", "_method" or "_external" as its own arguments).
        search={k: v for k in SEARCH_TERMS if (v := request.args.get(k, ""))},
        actions=[a.value for a in AuditAction],
        outcomes=[o.value for o in Outcome],
        checkpoint=checkpoint,
        integrity=integrity.check(rt, fresh=request.args.get("verify") == "now"),
    )


@page("/audit/checkpoint", permission=Permission.AUDIT_CHECKPOINT_CREATE, methods=("POST",))
def audit_sign_checkpoint() -> Response:
    """Sign a checkpoint of the log as it is now, and verify again."""
    audit_log.sign_now(runtime())
    integrity.check(runtime(), fresh=True)
    return done("flash.checkpoint_signed", "web.audit_events")


@page("/audit/events/<int:seq>", permission=Permission.AUDIT_PROOF)
def audit_event(seq: int) -> str:
    """One event and its inclusion proof, checked here against the signed checkpoint's root."""
    rt = runtime()
    # As the API's proof endpoint: any event for those who may read the log (auditors), else only
    # the caller's own (an operator checking an event it made); another's reads as missing.
    who = user()
    only_actor = None if allows(who.role, Permission.AUDIT_READ) else who.actor
    proof = audit_log.inclusion(rt, seq, None, only_actor=only_actor)
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    leaf = merkle.hash_leaf(proof["entry"].encode())
    checkpoint = proof.get("checkpoint") or {}
    root = checkpoint.get("root_hash") or proof["root_hash"]
    verified = leaf.hex() == proof["leaf_hash"] and merkle.verify_inclusion(
        seq, proof["tree_size"], leaf, path, bytes.fromhex(root)
    )
    return render_template("auditor/event.html", seq=seq, proof=proof, verified=verified)


@page("/audit/export", permission=Permission.AUDIT_READ)
def audit_export() -> Response:
    """The log (or a time window of it) as NDJSON; the export is itself an audited event."""
    lines = audit_log.export(
        runtime(), actor=user().actor, request_id=g.request_id, since=_when("since"), until=_when("until")
    )
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = 'attachment; filename="audit-export.ndjson"'
    return response


@page("/audit/usage", permission=Permission.AUDIT_READ)
def audit_usage() -> str:
    """Calls, denials and ε spent per day, for all operators, one operator, or one contract."""
    rt = runtime()
    operator_id = request.args.get("operator") or None
    contract_id = request.args.get("contract") or None
    try:
        days = int(request.args.get("days", "14"))
    except ValueError:
        days = 14
    days = max(1, min(days, usage_report.MAX_DAYS))
    with rt.sessions() as session:
        names = console_service.operator_names(session)
        if operator_id is not None and operator_id not in names:
            raise NotFound("no such operator")
        now = rt.clock()
        choices = contracts.list_contracts(session, operator_id=operator_id, status=None, now=now)
        if contract_id is not None and contract_id not in {c.id for c in choices}:
            contract_id = None
        series = usage_report.usage_series(
            session, now=now, days=days, operator_id=operator_id, authorization_id=contract_id
        )
        return render_template(
            "auditor/usage.html",
            series=series,
            names=names,
            contracts=choices,
            operator_id=operator_id or "",
            contract_id=contract_id or "",
            days=days,
        )
