"""The auditor's API: event search, checkpoints, inclusion and consistency proofs, the export."""

from __future__ import annotations

import re
from typing import Annotated, Any

from flask import Blueprint, Response, current_app, g, jsonify, stream_with_context
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from audit import MAX_SEQ
from audit.actions import Outcome
from audit.queries import EventFilter, search_events
from authz.permissions import Permission, allows
from core.clock import as_utc
from sandbox.api.auth import principal
from sandbox.api.parsing import parse_query
from sandbox.api.registry import route
from sandbox.runtime import Runtime
from sandbox.services import audit_log

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")

Seq = Field(ge=0, le=MAX_SEQ)
# RFC 3339's date-time: pydantic would also take a number of seconds (or of milliseconds, if
# large) since 1970, which API.md does not promise and a client's mistake would turn into a
# window of another time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: object) -> object:
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    raise ValueError("an RFC 3339 time with its offset, such as 2026-11-01T00:00:00Z")


# A time with its offset, that has a UTC equivalent (the log's times are UTC).
UtcTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(as_utc)]


class EventQuery(BaseModel):
    """Search terms: ``actor`` is ``kind:id``, a kind, or an id; ``cursor`` is the last page's."""

    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=64)
    outcome: Outcome | None = None
    target_type: str | None = Field(default=None, max_length=64)
    target_id: str | None = Field(default=None, max_length=128)
    request_id: str | None = Field(default=None, max_length=128)
    since: UtcTime | None = None
    until: UtcTime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: int | None = Field(default=None, ge=0, le=MAX_SEQ)

    def terms(self) -> EventFilter:
        """The filter these terms describe."""
        return EventFilter(
            **EventFilter.actor_terms(self.actor),
            action=self.action,
            outcome=self.outcome.value if self.outcome else None,
            target_type=self.target_type,
            target_id=self.target_id,
            request_id=self.request_id,
            since=self.since,
            until=self.until,
        )


class EventPage(BaseModel):
    """Events in log order; ``next_cursor`` is null on the last page."""

    events: list[dict[str, Any]]
    next_cursor: int | None


class CheckpointOut(BaseModel):
    """A signed checkpoint; ``note`` is the C2SP signed note, verifiable on its own."""

    tree_size: int
    root_hash: str
    timestamp: str
    signature: str
    key_id: str
    note: str


class CheckpointList(BaseModel):
    """Checkpoints, oldest first."""

    checkpoints: list[CheckpointOut]
    next_after: int | None


class CheckpointQuery(BaseModel):
    """A page of checkpoints after a tree size."""

    model_config = ConfigDict(extra="forbid")
    after: int | None = Seq
    limit: int = Field(default=100, ge=1, le=1000)


class InclusionQuery(BaseModel):
    """The event and the tree size; without a size, the latest checkpoint that covers the event."""

    model_config = ConfigDict(extra="forbid")
    seq: int = Seq
    tree_size: int | None = Field(default=None, ge=1, le=MAX_SEQ)


class InclusionOut(BaseModel):
    """RFC 9162 inclusion proof, with the entry so the leaf hash can be recomputed."""

    leaf_index: int
    tree_size: int
    leaf_hash: str
    entry: str
    audit_path: list[str]
    root_hash: str
    checkpoint: CheckpointOut | None


class ConsistencyQuery(BaseModel):
    """Two tree sizes, ``first <= second``."""

    model_config = ConfigDict(extra="forbid")
    first: int = Seq
    second: int = Seq


class ConsistencyOut(BaseModel):
    """RFC 9162 consistency proof between two tree sizes."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class ExportQuery(BaseModel):
    """A time window; without one, the whole log (verifiable from seq 0)."""

    model_config = ConfigDict(extra="forbid")
    since: UtcTime | None = None
    until: UtcTime | None = None


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["sandbox"]
    return runtime


@route(
    bp,
    "/events",
    permission=Permission.AUDIT_READ,
    query=EventQuery,
    response=EventPage,
    summary="Search the audit log; events in log order with seq and leaf hash",
)
def events() -> Response:
    """Cursor paging: pass the ``next_cursor`` of one page as ``cursor`` for the next."""
    query = parse_query(EventQuery)
    with _runtime().sessions() as session:
        found, cursor = search_events(session, query.terms(), limit=query.limit, after=query.cursor)
    return jsonify({"events": found, "next_cursor": cursor})


@route(
    bp,
    "/checkpoint",
    permission=Permission.AUDIT_CHECKPOINT_READ,
    response=CheckpointOut,
    summary="The latest signed checkpoint",
)
def checkpoint() -> Response:
    """404 until the first checkpoint is signed."""
    return jsonify(audit_log.latest(_runtime()))


@route(
    bp,
    "/checkpoints",
    permission=Permission.AUDIT_READ,
    query=CheckpointQuery,
    response=CheckpointList,
    summary="Every signed checkpoint, oldest first",
)
def checkpoints() -> Response:
    """Paged by tree size."""
    query = parse_query(CheckpointQuery)
    found = audit_log.checkpoints(_runtime(), after=query.after, limit=query.limit)
    more = len(found) == query.limit
    return jsonify({"checkpoints": found, "next_after": found[-1]["tree_size"] if more else None})


@route(
    bp,
    "/checkpoints",
    methods=("POST",),
    permission=Permission.AUDIT_CHECKPOINT_CREATE,
    response=CheckpointOut,
    status=201,
    extra_responses={200: "nothing was added since the last checkpoint: that one"},
    summary="Sign a checkpoint of the log as it is now",
)
def sign_checkpoint() -> tuple[Response, int]:
    """201 with the checkpoint of the current size; 200 with it when it had been signed already
    (nothing was added since); 503 checkpoint_copy_failed when its file copy could not be made."""
    view, created = audit_log.sign_if_new(_runtime())
    return jsonify(view), 201 if created else 200


@route(
    bp,
    "/proofs/inclusion",
    permission=Permission.AUDIT_PROOF,
    query=InclusionQuery,
    response=InclusionOut,
    summary="Inclusion proof of one event (operators: their own events)",
)
def inclusion() -> Response:
    """404 for an event the caller may not see, exactly as for one that does not exist."""
    query = parse_query(InclusionQuery)
    who = principal()
    only_actor = None if allows(who.role, Permission.AUDIT_READ) else who.actor
    return jsonify(audit_log.inclusion(_runtime(), query.seq, query.tree_size, only_actor=only_actor))


@route(
    bp,
    "/proofs/consistency",
    permission=Permission.AUDIT_READ,
    query=ConsistencyQuery,
    response=ConsistencyOut,
    summary="Consistency proof between two tree sizes",
)
def consistency() -> Response:
    """422 unless ``first <= second <= `` the log's size."""
    query = parse_query(ConsistencyQuery)
    return jsonify(audit_log.consistency(_runtime(), query.first, query.second))


@route(
    bp,
    "/export",
    permission=Permission.AUDIT_READ,
    query=ExportQuery,
    summary="The log or a time window (after its proof) as NDJSON, verifiable offline",
)
def export() -> Response:
    """The export itself is an audited event, recorded before the first line is sent."""
    query = parse_query(ExportQuery)
    lines = audit_log.export(
        _runtime(), actor=principal().actor, request_id=g.request_id, since=query.since, until=query.until
    )
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = 'attachment; filename="audit-export.ndjson"'
    return response
