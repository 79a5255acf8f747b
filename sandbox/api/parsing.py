"""Reading request bodies and query strings into pydantic models, with the API's errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel

from core.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


def json_body() -> Any:
    """The request's JSON body; ``bad_request`` when it is missing, not JSON or not UTF-8."""
    if not request.mimetype or request.mimetype != "application/json":
        raise BadRequest("send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8") from exc
    except (json.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's parser accepts them unless told not to.
    raise ValueError(f"{name} is not a JSON value")


def parse_body(model: type[M]) -> M:
    """The body validated as ``model`` (pydantic errors become ``invalid`` with every problem)."""
    data = json_body()
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return model.model_validate(data)


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model``; a repeated parameter is refused."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"query parameter {key!r} is given more than once")
        args[key] = values[0]
    return model.model_validate(args)
