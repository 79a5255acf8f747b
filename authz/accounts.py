"""Staff and subject accounts: creation and password sign-in."""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Target, record_event
from authz.models import Account
from authz.permissions import Role
from core.accepted_codes import subject_problem
from core.clock import Clock, utcnow
from core.errors import Conflict, Invalid
from core.passwords import hash_secret, verify_secret

USERNAME = re.compile(r"\A[A-Za-z0-9_.@-]{3,64}\Z")  # \Z: "$" would let a final newline in
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # what sign-in takes: a longer one could never be typed in
ACCOUNT_ROLES = (Role.ADMIN, Role.REVIEWER, Role.AUDITOR, Role.SUBJECT)


def create_account(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str,
    subject_id: str | None,
    actor: Actor,
    clock: Clock = utcnow,
) -> Account:
    """Create an account; every problem with the request is listed at once."""
    problems = []
    if not USERNAME.match(username):
        problems.append({"field": "username", "message": "3-64 letters, digits or . _ @ -"})
    if role not in ACCOUNT_ROLES:
        problems.append({"field": "role", "message": f"one of {', '.join(r.value for r in ACCOUNT_ROLES)}"})
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        problems.append({"field": "password", "message": f"{MIN_PASSWORD}-{MAX_PASSWORD} characters"})
    elif any(unicodedata.category(ch) in ("Cc", "Cs") or ch == "\ufeff" for ch in password):
        # No sign-in form could send it back (a NUL is refused in every form and body): an account
        # made with one could never sign in.
        problems.append(
            {"field": "password", "message": "no control characters, byte order marks or surrogates"}
        )
    if role is Role.SUBJECT and not subject_id:
        problems.append(
            {"field": "subject_id", "message": "a subject account names its credit code or ID number"}
        )
    if role is Role.SUBJECT and subject_id and (found := subject_problem(session, subject_id)) is not None:
        problems.append({"field": "subject_id", "message": found})
    if role is not Role.SUBJECT and subject_id:
        problems.append({"field": "subject_id", "message": "only subject accounts have a subject id"})
    if problems:
        raise Invalid(f"{len(problems)} problem(s) with the account", details=problems)
    # Taken in any case (see Account.username_key): checked here for the clear answer, and by the
    # unique key when two requests race past this check.
    key = username.lower()
    if session.execute(select(Account.id).where(Account.username_key == key)).first():
        raise Conflict(f"username {username!r} is taken")
    account = Account(
        id=str(uuid.uuid4()),
        username=username,
        username_key=key,
        role=role.value,
        subject_id=subject_id,
        password_hash=hash_secret(password),
        created_at=clock(),
    )
    session.add(account)
    try:
        session.flush()
    except IntegrityError as exc:
        if "username" not in str(exc.orig):  # not the race below: a real error, shown as one
            raise
        # Made by another request since the check above (PostgreSQL; SQLite writers take turns).
        raise Conflict(f"username {username!r} is taken") from exc
    record_event(
        session,
        action=AuditAction.ACCOUNT_CREATE,
        actor=actor,
        target=Target("account", account.id),
        details={"username": username, "role": role.value},
        clock=clock,
    )
    return account


def authenticate(session: Session, *, username: str, password: str) -> Account | None:
    """The account if the password matches and the account is enabled; ``None`` otherwise.

    The same work is done whether or not the user exists, so timing does not tell them apart.
    """
    account = session.execute(select(Account).where(Account.username == username)).scalar_one_or_none()
    ok = verify_secret(account.password_hash if account else None, password)
    if account is None or not ok or account.disabled_at is not None:
        return None
    return account
