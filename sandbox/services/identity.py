"""Issuing access tokens: client credentials for operators, passwords for staff and subjects."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from audit import Actor, ActorKind, AuditAction, Target, record_event
from authz import accounts, tokens
from authz.permissions import Role
from core import keyring
from core.db import transaction
from core.errors import BadRequest, ConfigurationError
from core.keys import SigningKey
from operators import services as operators
from sandbox.runtime import Runtime

_KEYS: dict[str, SigningKey] = {}
_LOCK = threading.Lock()

MAX_CLIENT_ID = 64  # as the body's client_id (and the column of client ids)
MAX_CLIENT_SECRET = 256  # as the body's client_secret
# What a refused HTTP Basic attempt answers with (RFC 6749 §5.2: invalid_client, when the client
# authenticated through the Authorization header; RFC 7617 for the realm).
BASIC_CHALLENGE = 'Basic realm="sandbox"'


class BasicRefused(BadRequest):
    """An ``Authorization: Basic`` header that cannot be read, or credentials sent twice (400)."""

    www_authenticate = BASIC_CHALLENGE


class InvalidBasicClient(tokens.Unauthenticated):
    """Client credentials sent with HTTP Basic that name no usable client (401, with a challenge)."""

    www_authenticate = BASIC_CHALLENGE


def signing_key(runtime: Runtime) -> SigningKey:
    """The active signing key, loaded from its file once per process and key."""
    with runtime.sessions() as session:
        record = keyring.active_record(session)
    if record is None:
        raise ConfigurationError("no active signing key: run `sandbox init`")
    with _LOCK:
        if record.kid not in _KEYS:
            from core import keys

            _KEYS[record.kid] = keys.load(runtime.settings.keys_dir, record.kid)
        return _KEYS[record.kid]


def _issue(
    runtime: Runtime, *, subject: str, role: Role, actor: Actor, request_id: str | None, action: AuditAction
) -> tuple[str, int]:
    token, ttl = tokens.issue(
        signing_key(runtime),
        subject=subject,
        role=role,
        ttl_seconds=runtime.settings.token_ttl_seconds,
        clock=runtime.clock,
    )
    with transaction(runtime.sessions) as session:
        record_event(
            session,
            action=action,
            actor=actor,
            target=Target(role.value, subject),
            request_id=request_id,
            clock=runtime.clock,
        )
    return token, ttl


def basic_credentials(authorization: str | None, body: Mapping[str, object]) -> tuple[str, str] | None:
    """The client id and secret of an ``Authorization: Basic`` header (RFC 6749 §2.3.1,
    client_secret_basic), or ``None`` when the request sends no Basic credentials.

    Each half is form-urlencoded before it is joined with ``:`` and base64-encoded, so a colon
    or a non-ASCII character of an id or a secret arrives escaped: the header is split on its
    first colon, then each half decoded. A header of another scheme is not read here (a client
    that sends a stale bearer token along is answered as it was before Basic was taken). A body
    that also holds a client secret is refused: a client uses one method (RFC 6749 §2.3). A body
    ``client_id`` only identifies the client (§3.2.1), and some OAuth libraries send it beside
    Basic: it is taken when it is the header's, refused when it names another client.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    if "client_secret" in body:
        raise BasicRefused(
            "client credentials are given both in the Authorization header and in the body: "
            "send them in one place only"
        )
    client_id, client_secret = _split_basic(token.strip())
    if "client_id" in body and body["client_id"] != client_id:
        raise BasicRefused("the body's client_id is not the one the Authorization: Basic header names")
    if not client_id:
        raise BasicRefused("the Authorization: Basic credentials name no client id")
    if not client_secret:
        raise BasicRefused("the Authorization: Basic credentials hold no client secret")
    if len(client_id) > MAX_CLIENT_ID:
        raise BasicRefused(f"the Authorization: Basic client id is over {MAX_CLIENT_ID} characters")
    if len(client_secret) > MAX_CLIENT_SECRET:
        raise BasicRefused(f"the Authorization: Basic client secret is over {MAX_CLIENT_SECRET} characters")
    if "\x00" in client_id or "\x00" in client_secret:
        # PostgreSQL cannot store NUL in text, nor look one up: refused on every backend alike.
        raise BasicRefused("the Authorization: Basic credentials hold a NUL character")
    return client_id, client_secret


def _split_basic(token: str) -> tuple[str, str]:
    """``base64(form-urlencoded(id) ":" form-urlencoded(secret))`` read back; 400 when it is not."""
    expected = "send Authorization: Basic base64(client_id:client_secret)"
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 (or not ASCII), or not UTF-8 once decoded
        raise BasicRefused(
            f"the Authorization: Basic credentials are not base64 of UTF-8 text: {expected}"
        ) from None
    encoded_id, colon, encoded_secret = decoded.partition(":")
    if not colon:
        raise BasicRefused(f"the Authorization: Basic credentials hold no colon: {expected}")
    try:
        return _form_decoded(encoded_id), _form_decoded(encoded_secret)
    except UnicodeDecodeError:
        raise BasicRefused("the Authorization: Basic credentials escape bytes that are not UTF-8") from None


def _form_decoded(text: str) -> str:
    # As the form body is read: "+" is a space, and an escape that is no UTF-8 (%ff) is refused
    # rather than read as U+FFFD, which would be another id than the one sent.
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


def token_for_client(
    runtime: Runtime, *, client_id: str, client_secret: str, request_id: str | None, basic: bool = False
) -> tuple[str, int]:
    """An operator's access token for valid, unrevoked client credentials of an active operator.

    ``basic``: the credentials came in an ``Authorization: Basic`` header, so their refusal
    challenges for it (RFC 6749 §5.2); it is the same 401, and the same denial in the log.
    """
    with runtime.sessions() as session:
        operator = operators.authenticate_client(session, client_id=client_id, client_secret=client_secret)
        if operator is None:
            refused = InvalidBasicClient if basic else tokens.Unauthenticated
            raise refused("invalid client credentials")
        operators.require_active(operator)
        operator_id = operator.id
    return _issue(
        runtime,
        subject=operator_id,
        role=Role.OPERATOR,
        request_id=request_id,
        actor=Actor(ActorKind.OPERATOR, operator_id),
        action=AuditAction.AUTH_TOKEN,
    )


def token_for_password(
    runtime: Runtime, *, username: str, password: str, request_id: str | None
) -> tuple[str, int]:
    """A staff member's or subject's access token for a valid username and password."""
    with runtime.sessions() as session:
        account = accounts.authenticate(session, username=username, password=password)
        if account is None:
            raise tokens.Unauthenticated("invalid username or password")
        role, account_id = Role(account.role), account.id
    return _issue(
        runtime,
        subject=account_id,
        role=role,
        request_id=request_id,
        actor=Actor(ActorKind(role.value), account_id),
        action=AuditAction.AUTH_LOGIN,
    )
