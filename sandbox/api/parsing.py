"""Reading request bodies and query strings into pydantic models, with the API's errors."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Collection
from typing import Any, TypeVar, Union, get_args, get_origin

from flask import request
from pydantic import BaseModel
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected, HTTPException

from core.errors import BadRequest, Invalid, TooLarge
from core.text import is_utf8_text

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32  # no request shape here nests deeper than a few levels
MAX_INT_DIGITS = 4300  # Python's own limit on converting digits to an int
QUERY_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits; no "+", point, "_", space or exponent


def body_bytes() -> bytes:
    """The request's body, read once and kept; a body that cannot be read whole is ``bad_request``.

    A body cut short (the client stopped before its ``Content-Length``) is Werkzeug's
    ``ClientDisconnected``; a chunked body whose framing is malformed (a chunk size that is no
    hexadecimal number, data longer than its size, a bad trailer) is the WSGI server's own
    exception, of no type shared between servers (gunicorn's ``InvalidChunkSize``, for one), and
    was a 500. Both are the client's malformed request, refused as this API refuses any other.
    """
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity"):
        # Werkzeug does not decode a compressed body: it would be read as bytes that are neither
        # UTF-8 nor JSON, and refused saying so, which sends its client looking in the wrong place.
        raise BadRequest(
            f"the body is sent with Content-Encoding {coding[:32]!r}, which this API does not "
            "take: send it uncompressed"
        )
    try:
        raw = request.get_data(cache=True)
    except ClientDisconnected:
        raise BadRequest("the body ended before its declared length") from None
    except HTTPException:  # a limit Werkzeug enforces (413): answered as it is
        raise
    except Exception as exc:  # the server's stream: see above
        raise BadRequest(
            "the body could not be read: its chunked transfer coding is malformed, or the connection failed"
        ) from exc
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A streamed (chunked) body: Werkzeug stops reading at the limit and returns what it has,
        # so a longer body would be parsed cut short (a form as well as JSON). It may have been
        # exactly the limit; it is refused all the same, as the rest could not be told apart from a cut.
        raise TooLarge(f"the body is over {limit} bytes")
    return raw


def json_body() -> Any:
    """The request's JSON body; ``bad_request`` when it is missing, not JSON or not UTF-8."""
    if not request.mimetype or request.mimetype != "application/json":
        raise BadRequest("send the body as JSON with Content-Type: application/json")
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
        # JSON is UTF-8 (RFC 8259 §8.1) and read as such: a body declared in another charset
        # would be read as other text than its client meant, or refused as "not UTF-8".
        raise BadRequest(f"the body is declared charset={charset[:32]!r}: send JSON as UTF-8")
    raw = body_bytes()
    try:
        text = raw.decode("utf-8")
        data = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_parse_int, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8") from exc
    except RecursionError as exc:
        raise BadRequest(f"the body is nested more than {MAX_DEPTH} levels deep") from exc
    except (_RepeatedKey, _LongInteger) as exc:
        raise BadRequest(str(exc)) from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    _check_value(data, depth=0)
    return data


def _check_value(value: Any, *, depth: int) -> None:
    """Refuse what JSON allows but no field here needs: deep nesting and lone UTF-16 surrogates.

    A ``\\ud800`` escape parses to a Python string that cannot be encoded as UTF-8, which would
    fail deep in a database driver or the response encoder instead of here, as a clear 400.
    """
    if depth > MAX_DEPTH:
        raise BadRequest(f"the body is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_value(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth=depth + 1)


def _check_text(text: str) -> None:
    if not is_utf8_text(text):
        raise BadRequest("the body holds a lone UTF-16 surrogate, which is not text")
    if "\x00" in text:
        # PostgreSQL cannot store NUL in text; refused here for every backend alike.
        raise BadRequest("the body holds a NUL character")


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on a repeated key (Python keeps the last, others the first or fail):
    # a body with one is ambiguous, and a proxy or a log that read it differently from us would
    # see another request than the one we served.
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _RepeatedKey(f"the body repeats the key {key[:64]!r} in one object")
            seen.add(key)
    return found


class _LongInteger(ValueError):
    pass


def _parse_int(digits: str) -> int:
    # Python refuses to convert more than 4,300 digits, in a message about sys.set_int_max_str_digits
    # that is no business of a client's; said here in the API's words instead.
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:  # the sign is no digit
        raise _LongInteger(f"the body holds an integer of more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _refuse_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's parser accepts them unless told not to.
    raise ValueError(f"{name} is not a JSON value")


def refuse_query() -> None:
    """An endpoint that takes its input in the body refuses a query string, listing its names."""
    if request.query_string:
        names = list(dict.fromkeys(request.args))
        raise Invalid(
            "this endpoint takes its input in the body, and no query parameters",
            details=[{"field": f"query.{name[:64]}", "message": "unknown query parameter"} for name in names]
            or [{"field": "query", "message": "no query string"}],
        )


def parse_body(model: type[M]) -> M:
    """The body validated as ``model`` (pydantic errors become ``invalid`` with every problem).

    An endpoint that reads a body reads nothing else: a query parameter given beside it is
    refused, as an unknown key of the body is, not ignored (``POST /v1/verify?template=x`` would
    run the body's template while its caller believed it had asked for another).
    """
    refuse_query()
    data = json_body()
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return model.model_validate(data)


def parse_query(model: type[M]) -> M:
    """The query string validated as ``model``; a repeated parameter is refused.

    An integer parameter is ASCII digits with an optional ``-``, as in a JSON body: pydantic's lax
    mode would also take ``1.0``, ``+5``, ``1_000`` and `` 7 `` (each read as another spelling of
    a number, so two clients' logs would disagree on what was asked).
    """
    values = single_values(request.args, "query parameter")
    wrong = [
        {"field": name, "message": "an integer of ASCII digits (no +, point, underscore or space)"}
        for name, value in values.items()
        if name in model.model_fields
        and _integer_field(model.model_fields[name].annotation)
        and not QUERY_INTEGER.fullmatch(value)
    ]
    if wrong:
        raise Invalid(f"{len(wrong)} problem(s) in the request", details=wrong)
    return model.model_validate(values)


def _integer_field(annotation: Any) -> bool:
    """``int``, or ``int | None``."""
    if annotation is int:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return int in get_args(annotation) and all(a in (int, type(None)) for a in get_args(annotation))
    return False


def single_values(
    given: MultiDict[str, str], what: str, *, repeatable: Collection[str] = ()
) -> dict[str, str]:
    """Each name's one value; a name given twice is refused (which one counts would be a guess),
    unless it is ``repeatable`` (its first value is then the one returned)."""
    found: dict[str, str] = {}
    for key in given:
        values = given.getlist(key)
        if len(values) > 1 and key not in repeatable:
            raise BadRequest(f"{what} {key[:64]!r} is given more than once")
        found[key] = values[0]
    return found
