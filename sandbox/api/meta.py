"""Service-level endpoints: health, the OpenAPI document, the published keys."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel, ConfigDict

from core import keyring
from sandbox.api.registry import PUBLIC, openapi_document, route
from sandbox.services.health import check_health

bp = Blueprint("meta", __name__)


class Health(BaseModel):
    """Whether the service and its databases answer."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "degraded"]
    control_db: Literal["ok", "unavailable"]
    data_db: Literal["ok", "unavailable"]
    stale_datasets: int  # datasets refused until loaded again: the policy changed their shape
    policy_sha256: str
    version: str


class Jwks(BaseModel):
    """A JSON Web Key Set (RFC 7517)."""

    keys: list[dict[str, Any]]


@route(bp, "/healthz", permission=PUBLIC, summary="Liveness and database reachability", response=Health)
def healthz() -> Response:
    """200 when both databases answer, 503 otherwise."""
    report = check_health(current_app.extensions["sandbox"])
    response = jsonify(report)
    response.status_code = 200 if report["status"] == "ok" else 503
    return response


@route(bp, "/openapi.json", permission=PUBLIC, summary="The OpenAPI 3 document of this API")
def openapi() -> Response:
    """Generated from the declared endpoints and their pydantic schemas."""
    from sandbox import __version__

    return jsonify(openapi_document(title="Public Data Sandbox API", version=__version__))


@route(
    bp, "/.well-known/jwks.json", permission=PUBLIC, summary="Public keys for tokens and seals", response=Jwks
)
def jwks() -> Response:
    """Current and still-valid old public keys; cacheable for a few minutes."""
    runtime = current_app.extensions["sandbox"]
    with runtime.sessions() as session:
        response = jsonify(keyring.published_jwks(session))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
