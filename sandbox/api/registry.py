"""Endpoint declarations: each view states its permission and schemas; OpenAPI is built from them.

Written by hand rather than with flask-openapi3 or spectree because those libraries own request
validation and its error shape, and both must follow API.md here (``invalid`` with every problem,
no framework-specific bodies); what is left is a registry and a small document builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

F = TypeVar("F", bound=Callable[..., Any])


class _Public:
    """The permission of endpoints anyone may call (health, keys, the OpenAPI document)."""

    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Final = _Public()


@dataclass(frozen=True)
class Endpoint:
    """What a view declared about itself."""

    rule: str
    methods: tuple[str, ...]
    endpoint: str
    permission: object
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: type[BaseModel] | None = None
    content_type: str = "application/json"
    # Other successes with the same body, by status, with what each means (``{200: "already signed"}``).
    extra_responses: dict[int, str] = field(default_factory=dict)
    body_types: tuple[str, ...] = ("application/json",)  # the media types the body may come in
    # A public endpoint whose caller may authenticate with HTTP Basic instead of body fields (the
    # token endpoint's client_secret_basic, RFC 6749 §2.3.1).
    basic_auth: bool = False


ENDPOINTS: list[Endpoint] = []


def route(
    blueprint: Blueprint,
    rule: str,
    *,
    methods: tuple[str, ...] = ("GET",),
    permission: object,
    summary: str,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: type[BaseModel] | None = None,
    content_type: str = "application/json",
    body_types: tuple[str, ...] = ("application/json",),
    extra_responses: dict[int, str] | None = None,
    basic_auth: bool = False,
) -> Callable[[F], F]:
    """Register a view on ``blueprint`` and declare it. ``permission`` is required: deny by default."""
    if permission is None:
        raise TypeError(f"{rule}: every endpoint must declare its permission")

    def decorator(view: F) -> F:
        from sandbox.api.auth import guard

        prefix = blueprint.url_prefix or ""
        ENDPOINTS.append(
            Endpoint(
                rule=prefix + rule,
                methods=methods,
                endpoint=f"{blueprint.name}.{view.__name__}",
                permission=permission,
                summary=summary,
                tag=blueprint.name,
                body=body,
                response=response,
                status=status,
                query=query,
                content_type=content_type,
                body_types=body_types,
                extra_responses=dict(extra_responses or {}),
                basic_auth=basic_auth,
            )
        )
        guarded = view if isinstance(permission, _Public) else guard(permission)(view)  # type: ignore[arg-type]
        guarded.__dict__["permission"] = permission
        blueprint.add_url_rule(rule, view_func=guarded, methods=list(methods))
        return view

    return decorator


class ErrorBody(BaseModel):
    """The body of every error response."""

    class Detail(BaseModel):
        code: str
        message: str
        details: Any | None = None

    error: Detail


def _openapi_path(rule: str) -> str:
    import re

    return re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule)


def openapi_document(*, title: str, version: str, endpoints: list[Endpoint] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the declared endpoints."""
    endpoints = ENDPOINTS if endpoints is None else endpoints
    models: set[type[BaseModel]] = {ErrorBody}
    for ep in endpoints:
        models.update(m for m in (ep.body, ep.response, ep.query) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, definitions = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        for method in ep.methods:
            paths.setdefault(_openapi_path(ep.rule), {})[method.lower()] = _operation(ep, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "clientSecretBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client id and secret, each form-urlencoded (RFC 6749, 2.3.1), "
                    "instead of client_id and client_secret in the body",
                },
            },
        },
    }


def _operation(ep: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    error_ref = {"$ref": refs[(ErrorBody, "validation")]["$ref"]}
    op: dict[str, Any] = {
        "operationId": ep.endpoint.replace(".", "_"),
        "summary": ep.summary,
        "tags": [ep.tag],
        "x-permission": repr(ep.permission) if isinstance(ep.permission, _Public) else str(ep.permission),
        "responses": {
            str(ep.status): {
                "description": "success",
                "content": {ep.content_type: {"schema": refs[(ep.response, "validation")]}}
                if ep.response is not None
                else {ep.content_type: {}},
            },
            "default": {"description": "error", "content": {"application/json": {"schema": error_ref}}},
        },
    }
    for status, description in ep.extra_responses.items():
        op["responses"][str(status)] = {**op["responses"][str(ep.status)], "description": description}
    if not isinstance(ep.permission, _Public):
        op["security"] = [{"bearer": []}]
    elif ep.basic_auth:
        op["security"] = [{}, {"clientSecretBasic": []}]
    if ep.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {media: {"schema": refs[(ep.body, "validation")]} for media in ep.body_types},
        }
    if ep.query is not None:
        op["parameters"] = [
            {
                "name": name,
                "in": "query",
                "required": info.is_required(),
                "schema": {"type": "string"},
                "description": info.description or "",
            }
            for name, info in ep.query.model_fields.items()
        ]
    import re

    params = re.findall(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", ep.rule)
    if params:
        op.setdefault("parameters", []).extend(
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
        )
    return op
