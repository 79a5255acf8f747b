"""Identity endpoints: tokens for operators (client credentials) and people (password)."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from authz.accounts import MAX_PASSWORD
from core.errors import BadRequest
from sandbox.api.parsing import json_body, refuse_query, single_values
from sandbox.api.registry import PUBLIC, route
from sandbox.services import identity

bp = Blueprint("identity", __name__, url_prefix="/v1")


class ClientCredentials(BaseModel):
    """OAuth 2.0 client-credentials grant (RFC 6749 §4.4), as a form or as JSON. A client that
    authenticates with HTTP Basic sends only ``grant_type`` (and ``scope``) here."""

    model_config = ConfigDict(extra="forbid")
    grant_type: Literal["client_credentials"]
    client_id: str = Field(min_length=1, max_length=identity.MAX_CLIENT_ID)
    client_secret: str = Field(min_length=1, max_length=identity.MAX_CLIENT_SECRET)
    scope: str | None = Field(default=None, max_length=256)


class ClientGrant(BaseModel):
    """The body of a client-credentials grant whose client authenticates with HTTP Basic."""

    model_config = ConfigDict(extra="forbid")
    grant_type: Literal["client_credentials"]
    scope: str | None = Field(default=None, max_length=256)


class Login(BaseModel):
    """A person's username and password."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class TokenResponse(BaseModel):
    """An access token."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


def _token_response(token: str, ttl: int) -> Response:
    response = jsonify({"access_token": token, "token_type": "Bearer", "expires_in": ttl})
    response.headers["Pragma"] = "no-cache"
    return response


@route(
    bp,
    "/oauth/token",
    methods=("POST",),
    permission=PUBLIC,
    body=ClientCredentials,
    body_types=("application/x-www-form-urlencoded", "application/json"),
    response=TokenResponse,
    basic_auth=True,
    summary="An operator's access token from its client credentials",
)
def oauth_token() -> Response:
    """Form-encoded (as OAuth clients send) or JSON; never in the query string (RFC 6749, 2.3.1:
    a client secret there would be written into every access log on its way). The client id and
    secret come in the body or in an ``Authorization: Basic`` header (client_secret_basic), not
    both; ``grant_type`` is always in the body."""
    refuse_query()
    if request.mimetype == "application/x-www-form-urlencoded":
        data = single_values(request.form, "form field")
    else:
        data = json_body()
    if not isinstance(data, dict):
        raise BadRequest("the body must be an object")
    if data.get("grant_type") not in (None, "client_credentials"):
        raise BadRequest("unsupported grant_type: only client_credentials is offered")
    basic = identity.basic_credentials(request.headers.get("Authorization"), data)
    if basic is None:
        grant = ClientCredentials.model_validate(data)
        client_id, client_secret = grant.client_id, grant.client_secret
    else:
        # A body client_id the header's (basic_credentials checked it) is no part of the grant.
        ClientGrant.model_validate({key: value for key, value in data.items() if key != "client_id"})
        client_id, client_secret = basic
    token, ttl = identity.token_for_client(
        current_app.extensions["sandbox"],
        client_id=client_id,
        client_secret=client_secret,
        request_id=g.request_id,
        basic=basic is not None,
    )
    return _token_response(token, ttl)


@route(
    bp,
    "/auth/login",
    methods=("POST",),
    permission=PUBLIC,
    body=Login,
    response=TokenResponse,
    summary="A staff member's or subject's access token from username and password",
)
def login() -> Response:
    """JSON ``{username, password}``."""
    from sandbox.api.parsing import parse_body

    body = parse_body(Login)
    token, ttl = identity.token_for_password(
        current_app.extensions["sandbox"],
        username=body.username,
        password=body.password,
        request_id=g.request_id,
    )
    return _token_response(token, ttl)
