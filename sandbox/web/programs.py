"""The reviewer's program page: source, sha256, the analysis; approve (optionally allowing exact
release) or reject. The compute services do the checks; this only shows and forwards."""

from __future__ import annotations

from flask import Response, g, render_template, request

from authz.permissions import Permission
from core.db import transaction
from core.errors import SandboxError
from sandbox.compute import programs
from sandbox.services import console as console_service
from sandbox.web.console import done, page, refused, runtime, user

REVIEW = Permission.PROGRAMS_REVIEW


@page("/review/programs/<program_id>", permission=Permission.PROGRAMS_READ_ALL)
def review_program(program_id: str) -> str:
    """The program as submitted, with what the analysis found."""
    rt = runtime()
    with rt.sessions() as session:
        program = programs.get_program(session, program_id, operator_id=None)
        return render_template(
            "reviewer/program.html",
            program=program,
            operator_name=console_service.operator_names(session).get(program.operator_id, ""),
        )


@page("/review/programs/<program_id>/approve", permission=REVIEW, methods=("POST",))
def review_program_approve(program_id: str) -> Response:
    """Approve, pinning the sha256; exact release only when the box is ticked."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            programs.approve_program(
                session,
                program_id,
                reviewer_id=user().id,
                comment=request.form.get("comment", "").strip() or None,
                allow_exact_release=request.form.get("allow_exact_release") == "yes",
                actor=user().actor,
                request_id=g.request_id,
                clock=rt.clock,
            )
    except SandboxError as exc:
        return refused(exc, "web.review_program", program_id=program_id)
    return done("flash.program_approved", "web.review_program", program_id=program_id)


@page("/review/programs/<program_id>/reject", permission=REVIEW, methods=("POST",))
def review_program_reject(program_id: str) -> Response:
    """Reject, with a comment the operator reads."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            programs.reject_program(
                session,
                program_id,
                reviewer_id=user().id,
                comment=request.form.get("comment", ""),
                actor=user().actor,
                request_id=g.request_id,
                clock=rt.clock,
            )
    except SandboxError as exc:
        return refused(exc, "web.review_program", program_id=program_id)
    return done("flash.program_rejected", "web.review_program", program_id=program_id)
