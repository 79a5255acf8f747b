"""Bad input always gets a clear error: every declared endpoint, a battery of malformed requests.

For each endpoint in ``sandbox.api.registry.ENDPOINTS``, called by a role that holds its permission
(no token for public ones), each bad request must be answered with a 4xx, the API's error shape
``{"error": {"code": "<snake_case>", "message": "..."}}`` and no stack trace; never a 5xx.

One home (embedded SQLite + DuckDB) serves the whole module so the battery stays fast: logging in
hashes passwords with argon2, and hundreds of fresh homes would take minutes. Objects named in a
path (operators, contracts, consents) are made fresh for each case, so no case depends on another.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from pydantic import BaseModel
from werkzeug.test import TestResponse

from audit import Actor, ActorKind
from authz import consent, contracts
from authz.permissions import ROLE_PERMISSIONS, Role
from core import passwords
from core.config import Settings, load_settings
from core.db import transaction
from operators import services as operator_services
from sandbox.api.registry import ENDPOINTS, PUBLIC, Endpoint
from sandbox.app import create_app  # importing the app registers every blueprint: ENDPOINTS is full
from sandbox.runtime import Runtime, init_home, open_runtime
from tests.api.conftest import CONTRACT_REQUEST, Party, make_account, make_operator
from tests.conftest import POLICIES
from tests.factories import uscc

SYSTEM = Actor(ActorKind.SYSTEM, "test")
SUBJECT_ID = "913701023C5XXXX13C"
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
TRACE_MARKERS = ("Traceback", 'File "/', "site-packages", "sqlalchemy.exc", "Error:")
# Roles tried in this order; the first that holds the endpoint's permission calls it.
ROLE_ORDER = (Role.ADMIN, Role.REVIEWER, Role.AUDITOR, Role.OPERATOR, Role.SUBJECT)


# ---------------------------------------------------------------------------------------------
# One home for the module, its callers, and fresh objects for path parameters.


@dataclass
class World:
    runtime: Runtime
    client: FlaskClient
    parties: dict[Role, Party]

    def caller(self, ep: Endpoint) -> dict[str, str]:
        if ep.permission is PUBLIC:
            return {}
        for role in ROLE_ORDER:
            if ep.permission in ROLE_PERMISSIONS[role]:
                return self.parties[role].headers
        raise AssertionError(f"no role holds {ep.permission}")

    def new_operator(self) -> str:
        with transaction(self.runtime.sessions) as session:
            return operator_services.register_operator(
                session,
                name="靶子运营方",
                credit_code=uscc(f"91370102{secrets.randbelow(10**10):010d}"),
                license_no="LIC-T",
                qualifications=[],
                actor=SYSTEM,
                request_id=None,
            ).id

    def new_contract(self) -> str:
        with transaction(self.runtime.sessions) as session:
            return contracts.request_authorization(
                session,
                self.runtime.catalog,
                operator_id=self.parties[Role.OPERATOR].id,
                actor=SYSTEM,
                request_id=None,
                **CONTRACT_REQUEST,
            ).id

    def new_consent(self) -> str:
        with transaction(self.runtime.sessions) as session:
            return consent.grant_consent(
                session,
                self.runtime.catalog,
                subject_id=SUBJECT_ID,
                operator_id=self.parties[Role.OPERATOR].id,
                purpose="贷前核验",
                templates=["enterprise_active"],
                valid_days=30,
                actor=SYSTEM,
                request_id=None,
            ).id

    def approved_contract(self) -> str:
        """An approved contract of the operator for verifications and aggregates (fresh budget)."""
        from tests.factories import make_contract

        with transaction(self.runtime.sessions) as session:
            return make_contract(
                session,
                operator_id=self.parties[Role.OPERATOR].id,
                datasets={"enterprises": ["credit_code", "status", "district", "registered_capital"]},
                operations=["verify:enterprise_active", "aggregate"],
                now=datetime.now(UTC),
            ).id

    def new_program(self, *, approved: bool = False) -> tuple[str, str]:
        """A compute contract of the operator and a program under it (pending, or approved)."""
        from tests.compute import factories

        operator = self.parties[Role.OPERATOR].id
        contract = factories.compute_contract(self.runtime, operator)
        if approved:
            return contract, factories.approved_program(self.runtime, operator, contract)
        return contract, factories.submitted_program(self.runtime, operator, contract, factories.MEAN_TAX)

    def new_job(self) -> str:
        from tests.compute import factories

        contract, program = self.new_program(approved=True)
        return factories.queued_job(self.runtime, self.parties[Role.OPERATOR].id, contract, program)

    def path_values(self, ep: Endpoint) -> dict[str, str]:
        makers: dict[str, Callable[[], str]] = {
            "operator_id": self.new_operator,
            "contract_id": self.new_contract,
            "consent_id": self.new_consent,
            "program_id": lambda: self.new_program()[1],
            "job_id": self.new_job,
            "name": lambda: "enterprise_tax",
        }
        # A parameter declared later than this file gets an id that names nothing (a 404 path).
        return {p: makers.get(p, lambda: "00000000-0000-4000-8000-000000000000")() for p in path_params(ep)}

    def base_body(self, ep: Endpoint) -> dict[str, Any]:
        """A well-formed body for ``ep``'s model (the cases below spoil one part of it)."""
        assert ep.body is not None
        bodies: dict[str, dict[str, Any]] = {
            "ContractIn": json.loads(json.dumps(CONTRACT_REQUEST)),
            "Decision": {"comment": "ok", "limits": {"daily_quota": 10}},
            "Reason": {"reason": "核查"},
            "ConsentIn": {
                "operator_id": self.parties[Role.OPERATOR].id,
                "purpose": "贷前核验",
                "templates": ["enterprise_active"],
                "valid_days": 30,
            },
            "ClientCredentials": {
                "grant_type": "client_credentials",
                "client_id": "op_x",
                "client_secret": "s",
            },
            "Login": {"username": "nobody", "password": "wrong"},
            "VerifyIn": {
                "authorization_id": self.approved_contract(),
                "template": "enterprise_active",
                "subject": SUBJECT_ID,
                "params": {},
            },
            "AggregateIn": {
                "authorization_id": self.approved_contract(),
                "dataset": "enterprises",
                "metrics": [{"op": "count"}, {"op": "sum", "field": "registered_capital"}],
                "group_by": ["district"],
                "filters": [{"field": "status", "op": "eq", "value": "存续"}],
                "epsilon": 0.1,
            },
            "ProgramIn": {
                "authorization_id": self.new_program()[0],
                "name": "均值",
                "source": "OUTPUT_BOUNDS = [0, 1]\nresult = len(data) / (1 + len(data))\n",
            },
            "ProgramApproval": {"comment": "ok", "allow_exact_release": False},
            "ProgramRejection": {"comment": "输出过细"},
            "JobIn": dict(
                zip(("authorization_id", "program_id"), self.new_program(approved=True), strict=True),
                params={"k": 1},
                epsilon=0.1,
            ),
            "OperatorIn": {
                "name": "测试运营方",
                "credit_code": uscc(f"91370102{secrets.randbelow(10**10):010d}"),
                "license_no": "LIC-2",
                "qualifications": ["小贷"],
            },
        }
        # A body model declared later than this file: its fields are spoiled one at a time in an
        # otherwise empty object, which still must never 500.
        return bodies.get(ep.body.__name__, {})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bad_input")
    settings = load_settings(
        {
            "SANDBOX_HOME": str(tmp / "home"),
            "SANDBOX_DATABASE_URL": f"sqlite:///{tmp}/control.sqlite",
            "SANDBOX_POLICIES": str(POLICIES),
        }
    )
    # Cheap argon2 parameters for this module only: logins, token grants and new credentials
    # would otherwise spend ~0.3 s each, and the battery makes hundreds of them.
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_HASHER", cheap)
        mp.setattr(passwords, "_DUMMY_HASH", cheap.hash("no such account"))
        yield from _world(settings)


def _world(settings: Settings) -> Iterator[World]:
    init_home(settings, actor=SYSTEM)
    runtime = open_runtime(settings, read_only_data=False)
    try:
        client = create_app(runtime=runtime).test_client()
        parties = {
            Role.ADMIN: make_account(runtime, client, Role.ADMIN, "admin1"),
            Role.REVIEWER: make_account(runtime, client, Role.REVIEWER, "reviewer1"),
            Role.AUDITOR: make_account(runtime, client, Role.AUDITOR, "auditor1"),
            Role.SUBJECT: make_account(runtime, client, Role.SUBJECT, "subj", subject_id=SUBJECT_ID),
            Role.OPERATOR: make_operator(runtime, client, "齐鲁普惠贷科技有限公司", SUBJECT_ID),
        }
        yield World(runtime, client, parties)
    finally:
        runtime.close()


# ---------------------------------------------------------------------------------------------
# The checks.


def assert_clear_error(response: TestResponse, *, strict: bool = True) -> None:
    """Never 5xx, never a trace; an error is the API's JSON shape. ``strict``: must be a 4xx."""
    text = response.get_data(as_text=True)
    status = response.status_code
    assert status < 500, f"{status}: {text[:500]}"
    for marker in TRACE_MARKERS:
        assert marker not in text, f"stack trace in body: {text[:500]}"
    if strict:
        assert 400 <= status < 500, f"expected a 4xx, got {status}: {text[:300]}"
    if status >= 400:
        assert response.mimetype == "application/json", (status, response.mimetype, text[:300])
        body = response.get_json()
        assert isinstance(body, dict) and set(body) == {"error"}, text[:300]
        error = body["error"]
        assert isinstance(error, dict) and {"code", "message"} <= set(error), text[:300]
        assert isinstance(error["code"], str) and SNAKE.match(error["code"]), error
        assert isinstance(error["message"], str) and error["message"].strip(), error
    assert response.headers.get("X-Request-Id")


def path_params(ep: Endpoint) -> list[str]:
    return re.findall(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", ep.rule)


def fill(rule: str, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", lambda m: values[m.group(1)], rule)


def ep_id(ep: Endpoint) -> str:
    return f"{ep.methods[0]} {ep.rule}"


def send(world: World, ep: Endpoint, path: str | None = None, **kwargs: Any) -> TestResponse:
    headers = {**world.caller(ep), **kwargs.pop("headers", {})}
    if path is None:
        path = fill(ep.rule, world.path_values(ep))
    return world.client.open(path, method=ep.methods[0], headers=headers, **kwargs)


class Raw:
    """JSON text placed verbatim where a value goes (for what ``json.dumps`` cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(value: Any) -> str:
    """``json.dumps`` (ASCII escapes, so lone surrogates become ``\\ud800``) with :class:`Raw` spliced in."""
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"@@RAW{len(raws) - 1}@@"
        raise TypeError(obj)

    text = json.dumps(value, default=default)
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{index}@@"', raw)
    return text


DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


# ---------------------------------------------------------------------------------------------
# The battery found four bugs, all fixed: deep nesting and lone UTF-16 surrogates were 500s
# (sandbox/api/parsing.py now refuses both with a 400), an explicit null min_cell_size was a 500
# (now a 422), and qualifications had no length limit (now 200 characters each).


# ---------------------------------------------------------------------------------------------
# 1. Whole-body garbage, on every endpoint. Endpoints that take a body must refuse it (4xx);
#    the others ignore the body, so for them only "never 5xx, never a trace" applies.

BODY_CASES: dict[str, dict[str, Any]] = {
    "no_body": {},
    "empty_json": {"data": b"", "content_type": "application/json"},
    "whitespace_json": {"data": b"  \n ", "content_type": "application/json"},
    "not_json": {"data": b"{not json", "content_type": "application/json"},
    "json_array": {"data": b"[1, 2, 3]", "content_type": "application/json"},
    "json_empty_array": {"data": b"[]", "content_type": "application/json"},
    "json_string": {"data": b'"hello"', "content_type": "application/json"},
    "json_number": {"data": b"42", "content_type": "application/json"},
    "json_null": {"data": b"null", "content_type": "application/json"},
    "json_true": {"data": b"true", "content_type": "application/json"},
    "json_nan": {"data": b"NaN", "content_type": "application/json"},
    "json_trailing_garbage": {"data": b'{"a": 1} xx', "content_type": "application/json"},
    "deep_array": {"data": DEEP_ARRAY.encode(), "content_type": "application/json"},
    "deep_object": {"data": DEEP_OBJECT.encode(), "content_type": "application/json"},
    "deep_array_in_object": {
        "data": ('{"x": ' + DEEP_ARRAY + "}").encode(),
        "content_type": "application/json",
    },
    "not_utf8": {"data": b'{"a": "\xff\xfe\xfa"}', "content_type": "application/json"},
    "utf16_bom": {"data": '{"a": 1}'.encode("utf-16"), "content_type": "application/json"},
    "text_plain": {"data": b'{"a": 1}', "content_type": "text/plain"},
    "form_encoded": {"data": b"a=1&a=2", "content_type": "application/x-www-form-urlencoded"},
    "multipart": {"content_type": "multipart/form-data; boundary=xx", "data": b"--xx\r\nbroken"},
    "huge_body_2mb": {
        "data": b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        "content_type": "application/json",
    },
    "bogus_charset": {"data": b'{"a": 1}', "content_type": "application/json; charset=klingon"},
}

# A JSON object body that is well-formed but wrong is refused by every body-taking endpoint.
OBJECT_CASES: dict[str, str] = {
    "empty_object": "{}",
    "duplicate_keys": '{"a": 1, "a": 2}',
    "huge_key": '{"' + "k" * 100_000 + '": 1}',
    "nul_key": '{"\\u0000": 1}',
    "surrogate_key": '{"\\ud800": 1}',
}


def _body_cases() -> list[Any]:
    return [pytest.param(ep, name, id=f"{ep_id(ep)} :: {name}") for ep in ENDPOINTS for name in BODY_CASES]


@pytest.mark.parametrize(("ep", "case"), _body_cases())
def test_body_garbage(world: World, ep: Endpoint, case: str) -> None:
    response = send(world, ep, **BODY_CASES[case])
    strict = ep.body is not None
    if ep.endpoint == "identity.oauth_token" and case == "form_encoded":
        strict = True  # a form is accepted there, but this one lacks every field
    assert_clear_error(response, strict=strict)


def _object_cases() -> list[Any]:
    return [
        pytest.param(ep, name, id=f"{ep_id(ep)} :: {name}")
        for ep in ENDPOINTS
        if ep.body is not None
        for name in OBJECT_CASES
    ]


@pytest.mark.parametrize(("ep", "case"), _object_cases())
def test_object_garbage(world: World, ep: Endpoint, case: str) -> None:
    response = send(world, ep, data=OBJECT_CASES[case].encode(), content_type="application/json")
    assert ep.body is not None
    # A model whose fields are all optional (an approval's comment and limits) accepts ``{}``;
    # duplicate keys collapse to the last one, which is then an unknown field like the others.
    no_required = not any(f.is_required() for f in ep.body.model_fields.values())
    assert_clear_error(response, strict=not (no_required and case == "empty_object"))


# ---------------------------------------------------------------------------------------------
# 2. One field spoiled at a time in an otherwise well-formed body.

HUGE = "x" * 100_000
# Values that are never acceptable for any field: strictly a 4xx.
ALWAYS_BAD: dict[str, Any] = {
    "huge_string": HUGE,
    "huge_chinese": "齐" * 100_000,
    "deep_nesting": Raw(DEEP_ARRAY),
    "deep_object": Raw(DEEP_OBJECT),
    "float_overflow_1e400": Raw("1e400"),
    "neg_float_overflow": Raw("-1e400"),
    "bigint_1e30": 10**30,
    "huge_int_5000_digits": Raw("9" * 5000),
}
# Wrong types and odd values: may be valid for an optional or free-form field, so the check is
# only "a clear error, if an error" (see LENIENT_OK for which ones are accepted on purpose).
ODD: dict[str, Any] = {
    "null": None,
    "number": 12345,
    "negative": -1,
    "zero": 0,
    "float": 1.5,
    "bool": True,
    "list": ["a", 1, None],
    "empty_list": [],
    "dict": {"a": {"b": [1]}},
    "empty_string": "",
    "nul_char": "a\u0000b",
    "lone_surrogate": "a\ud800b",
    "lone_low_surrogate": "\udfff",
    "rtl_override": "\u202egpj.exe",
    "emoji": "💥🧨👨‍👩‍👧",
    "zero_width": "\u200b\ufeff",
    "str_negative": "-1",
    "str_nan": "NaN",
    "str_inf": "Infinity",
    "str_1e309": "1e309",
    "path_traversal": "../../etc/passwd",
    "sql_ish": "'; DROP TABLE operators; --",
}


def _field_paths(ep: Endpoint) -> list[str]:
    """Top-level fields of the body model, and a few nested spots of the free-form ones."""
    assert ep.body is not None
    model: type[BaseModel] = ep.body
    paths = list(model.model_fields)
    if model.__name__ in ("ContractIn", "Decision"):
        paths += [f"limits.{k}" for k in ("valid_days", "daily_quota", "epsilon_total", "min_cell_size")]
    if model.__name__ == "ContractIn":
        paths += ["datasets.enterprise_tax", "datasets.enterprise_tax.0", "operations.0"]
    if model.__name__ == "ConsentIn":
        paths += ["templates.0"]
    if model.__name__ == "OperatorIn":
        paths += ["qualifications.0"]
    if model.__name__ in ("VerifyIn", "JobIn"):
        paths += ["params.unexpected"]
    if model.__name__ == "AggregateIn":
        paths += ["metrics.1.op", "metrics.1.field", "group_by.0", "filters.0.op", "filters.0.value"]
    return paths


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    parts = path.split(".")
    node: Any = body
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def _field_cases() -> list[Any]:
    out = []
    for ep in ENDPOINTS:
        if ep.body is None:
            continue
        for path in _field_paths(ep):
            for name in (*ALWAYS_BAD, *ODD):
                out.append(pytest.param(ep, path, name, id=f"{ep_id(ep)} :: {path}={name}"))
        for name in ("extra_field", "extra_field_huge_name", "extra_field_nul_name"):
            out.append(pytest.param(ep, "", name, id=f"{ep_id(ep)} :: {name}"))
    return out


EXTRA = {
    "extra_field": {"unexpected": 1},
    "extra_field_huge_name": {"u" * 10_000: 1},
    "extra_field_nul_name": {"\u0000\ud800": 1},
}


@pytest.mark.parametrize(("ep", "path", "case"), _field_cases())
def test_field_garbage(world: World, ep: Endpoint, path: str, case: str) -> None:
    body = world.base_body(ep)
    if case in EXTRA:
        body.update(EXTRA[case])
        strict = True
    else:
        value = ALWAYS_BAD.get(case, ODD.get(case))
        body = _set(body, path, value)
        strict = case in ALWAYS_BAD
    response = send(world, ep, data=dumps(body).encode(), content_type="application/json")
    assert_clear_error(response, strict=strict)


# The form-encoded token grant gets its own oddities.
FORM_CASES: dict[str, bytes] = {
    "form_huge_secret": b"grant_type=client_credentials&client_id=a&client_secret=" + b"x" * 100_000,
    "form_nul": b"grant_type=client_credentials&client_id=%00&client_secret=%00",
    "form_bad_utf8": b"grant_type=client_credentials&client_id=%ff%fe&client_secret=%ed%a0%80",
    "form_repeated": (
        b"grant_type=client_credentials&grant_type=password&client_id=a&client_id=b&client_secret=c"
    ),
    "form_wrong_grant": b"grant_type=password&username=a&password=b",
    "form_extra": b"grant_type=client_credentials&client_id=a&client_secret=b&evil=1",
    "form_empty": b"",
    "form_garbage": b"%%%&&&===\x00\xff",
}


@pytest.mark.parametrize("case", list(FORM_CASES))
def test_token_form_garbage(world: World, case: str) -> None:
    response = world.client.post(
        "/v1/oauth/token", data=FORM_CASES[case], content_type="application/x-www-form-urlencoded"
    )
    assert_clear_error(response)


# ---------------------------------------------------------------------------------------------
# 3. Path parameters: very long, traversal, NUL, Chinese, encodings.

PATH_CASES: dict[str, str] = {
    "long_10k": "a" * 10_000,
    "long_10k_chinese": "齐" * 10_000,
    "dot_dot_slash": "../../etc/passwd",
    "dot_dot_encoded": "..%2F..%2Fetc%2Fpasswd",
    "dot_dot": "..",
    "nul_encoded": "abc%00def",
    "nul_only": "%00",
    "chinese": "齐鲁普惠贷",
    "emoji": "💥",
    "bad_utf8_encoded": "%ff%fe",
    "surrogate_utf8_encoded": "%ed%a0%80",
    "rtl_override": "%E2%80%AEabc",
    "space_and_quote": "a%20b'%22",
    "sql_ish": "1'%20OR%20'1'='1",
    "uuid_like_wrong": "00000000-0000-0000-0000-000000000000",
    "negative": "-1",
}


def _path_cases() -> list[Any]:
    return [
        pytest.param(ep, param, name, id=f"{ep_id(ep)} :: {param}={name}")
        for ep in ENDPOINTS
        for param in path_params(ep)
        for name in PATH_CASES
    ]


@pytest.mark.parametrize(("ep", "param", "case"), _path_cases())
def test_path_garbage(world: World, ep: Endpoint, param: str, case: str) -> None:
    values = world.path_values(ep)
    values[param] = PATH_CASES[case]
    kwargs: dict[str, Any] = {}
    if ep.body is not None:  # a good body, so the bad path is what is refused
        kwargs = {"data": dumps(world.base_body(ep)).encode(), "content_type": "application/json"}
    response = send(world, ep, path=fill(ep.rule, values), **kwargs)
    assert_clear_error(response)


# ---------------------------------------------------------------------------------------------
# 4. Query strings: repeated keys, garbage values. Endpoints with a query model must refuse
#    them; the others ignore the query string (never 5xx, never a trace).

QUERY_GARBAGE = [
    "%ff%fe",
    "%00",
    "-1",
    "0",
    "NaN",
    "Infinity",
    "1e309",
    "9" * 5000,
    "1.5",
    "true",
    "x" * 100_000,
    "%ed%a0%80",
    "齐鲁",
    "../..",
]


def _query_cases() -> list[Any]:
    out = []
    for ep in ENDPOINTS:
        # Endpoints without a query model ignore the query string: a few cases are enough there.
        keys = list(ep.query.model_fields) if ep.query is not None else ["limit"]
        values = QUERY_GARBAGE if ep.query is not None else QUERY_GARBAGE[:2] + QUERY_GARBAGE[-4:]
        for key in keys:
            out.append(pytest.param(ep, f"{key}=1&{key}=2", True, id=f"{ep_id(ep)} :: repeated {key}"))
            for value in values:
                label = value if len(value) < 20 else f"{value[:5]}..({len(value)})"
                out.append(pytest.param(ep, f"{key}={value}", False, id=f"{ep_id(ep)} :: {key}={label}"))
        out.append(pytest.param(ep, "unknown_key=1", True, id=f"{ep_id(ep)} :: unknown key"))
        out.append(pytest.param(ep, "%00=%00&%ff=1&=&&&", True, id=f"{ep_id(ep)} :: mangled query"))
    return out


@pytest.mark.parametrize(("ep", "query", "always"), _query_cases())
def test_query_garbage(world: World, ep: Endpoint, query: str, always: bool) -> None:
    path = fill(ep.rule, world.path_values(ep)) + "?" + query
    kwargs: dict[str, Any] = {}
    if ep.body is not None:
        kwargs = {"data": dumps(world.base_body(ep)).encode(), "content_type": "application/json"}
    response = send(world, ep, path=path, **kwargs)
    # With a query model, garbage is refused unless the value happens to be valid for that key.
    strict = ep.query is not None and (always or not _query_value_valid(ep, query))
    assert_clear_error(response, strict=strict)


def _query_value_valid(ep: Endpoint, query: str) -> bool:
    """Whether ``key=value`` is a value the query model accepts (then a 200 is right)."""
    assert ep.query is not None
    from urllib.parse import parse_qsl

    pairs = parse_qsl(query, keep_blank_values=True, errors="replace")
    try:
        ep.query.model_validate(dict(pairs))
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# 5. Bad credentials on every guarded endpoint: 401, the error shape, no trace.

AUTH_CASES: dict[str, str] = {
    "bearer_empty": "Bearer ",
    "bearer_garbage": "Bearer not-a-jwt",
    "bearer_three_dots": "Bearer a.b.c",
    "bearer_huge": "Bearer " + "A" * 10_000,
    "bearer_alg_none": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "basic": "Basic YWRtaW46YWRtaW4=",
    "latin1": "Bearer \xe9\xe8",
}


def _auth_cases() -> list[Any]:
    return [
        pytest.param(ep, name, id=f"{ep_id(ep)} :: {name}")
        for ep in ENDPOINTS
        if ep.permission is not PUBLIC
        for name in AUTH_CASES
    ]


@pytest.mark.parametrize(("ep", "case"), _auth_cases())
def test_bad_credentials(world: World, ep: Endpoint, case: str) -> None:
    path = fill(ep.rule, {p: "x" for p in path_params(ep)})
    response = world.client.open(path, method=ep.methods[0], headers={"Authorization": AUTH_CASES[case]})
    assert_clear_error(response)
    assert response.status_code == 401, response.get_json()


def test_every_endpoint_is_covered() -> None:
    """The battery walks the registry, so a new endpoint is tested the day it is declared."""
    assert len(ENDPOINTS) >= 20
    assert {ep_id(ep) for ep in ENDPOINTS} <= {p.id.split(" :: ")[0] for p in _body_cases()}
