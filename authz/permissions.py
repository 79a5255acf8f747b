"""Permissions as ``resource:action``, and the one table from role to permissions.

Deny by default: a role holds exactly the permissions listed here; an endpoint declares the one
it needs; anything not granted is refused.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The parties of DESIGN.md."""

    OPERATOR = "operator"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    AUDITOR = "auditor"
    SUBJECT = "subject"


class Permission(StrEnum):
    """Everything an endpoint can require."""

    CATALOG_READ = "catalog:read"
    OPERATORS_READ = "operators:read"
    OPERATORS_WRITE = "operators:write"
    OPERATORS_SUSPEND = "operators:suspend"
    CREDENTIALS_ISSUE = "credentials:issue"
    AUTHORIZATIONS_REQUEST = "authorizations:request"
    AUTHORIZATIONS_READ = "authorizations:read"  # the caller's own, or all with read_all
    AUTHORIZATIONS_READ_ALL = "authorizations:read_all"
    AUTHORIZATIONS_REVIEW = "authorizations:review"
    CONSENTS_MANAGE = "consents:manage"
    ACCESSES_READ_OWN = "accesses:read_own"
    VERIFY_RUN = "verify:run"
    AGGREGATE_RUN = "aggregate:run"
    PROGRAMS_SUBMIT = "programs:submit"
    PROGRAMS_READ = "programs:read"  # the caller's own, or all with read_all
    PROGRAMS_READ_ALL = "programs:read_all"
    PROGRAMS_REVIEW = "programs:review"
    JOBS_RUN = "jobs:run"
    JOBS_READ = "jobs:read"  # compute jobs: the caller's own, or all with JOBS_READ_ALL
    JOBS_READ_OWN = "jobs:read_own"
    JOBS_READ_ALL = "jobs:read_all"
    AUDIT_READ = "audit:read"
    AUDIT_CHECKPOINT_READ = "audit:checkpoint_read"
    AUDIT_CHECKPOINT_CREATE = "audit:checkpoint_create"
    AUDIT_PROOF = "audit:proof"  # of any event with AUDIT_READ, else of the caller's own events
    KEYS_MANAGE = "keys:manage"
    USERS_MANAGE = "users:manage"
    CODES_READ = "codes:read"  # the credit codes accepted though they do not conform
    CODES_MANAGE = "codes:manage"


_STAFF_READ = {
    Permission.CATALOG_READ,
    Permission.OPERATORS_READ,
    Permission.AUTHORIZATIONS_READ,
    Permission.AUTHORIZATIONS_READ_ALL,
    Permission.PROGRAMS_READ,
    Permission.PROGRAMS_READ_ALL,
    Permission.CODES_READ,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(
        {
            Permission.CATALOG_READ,
            Permission.AUTHORIZATIONS_REQUEST,
            Permission.AUTHORIZATIONS_READ,
            Permission.VERIFY_RUN,
            Permission.AGGREGATE_RUN,
            Permission.PROGRAMS_SUBMIT,
            Permission.PROGRAMS_READ,
            Permission.JOBS_RUN,
            Permission.JOBS_READ,
            Permission.JOBS_READ_OWN,
            Permission.AUDIT_CHECKPOINT_READ,
            Permission.AUDIT_PROOF,
        }
    ),
    Role.REVIEWER: frozenset(
        {
            *_STAFF_READ,
            Permission.AUTHORIZATIONS_REVIEW,
            Permission.PROGRAMS_REVIEW,
            Permission.OPERATORS_SUSPEND,
            Permission.JOBS_READ,
            Permission.JOBS_READ_ALL,
        }
    ),
    Role.ADMIN: frozenset(
        {
            *_STAFF_READ,
            Permission.OPERATORS_WRITE,
            Permission.OPERATORS_SUSPEND,
            Permission.CREDENTIALS_ISSUE,
            Permission.KEYS_MANAGE,
            Permission.USERS_MANAGE,
            Permission.CODES_MANAGE,
            Permission.AUDIT_CHECKPOINT_READ,
            Permission.AUDIT_CHECKPOINT_CREATE,
            Permission.JOBS_READ,
            Permission.JOBS_READ_ALL,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            *_STAFF_READ,
            Permission.AUDIT_READ,
            Permission.AUDIT_CHECKPOINT_READ,
            Permission.AUDIT_CHECKPOINT_CREATE,
            Permission.AUDIT_PROOF,
            Permission.JOBS_READ,
            Permission.JOBS_READ_ALL,
        }
    ),
    Role.SUBJECT: frozenset(
        {Permission.CATALOG_READ, Permission.CONSENTS_MANAGE, Permission.ACCESSES_READ_OWN}
    ),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission``."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
