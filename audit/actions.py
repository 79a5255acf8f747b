"""Typed names for who acts, what they do, and how it ended. No magic strings in the log."""

from __future__ import annotations

from enum import StrEnum


class ActorKind(StrEnum):
    """The kind of party behind an event."""

    SYSTEM = "system"  # the service itself, or an administrator at the command line
    ADMIN = "admin"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    SUBJECT = "subject"
    ANONYMOUS = "anonymous"


class Outcome(StrEnum):
    """How the action ended."""

    SUCCESS = "success"
    DENIED = "denied"  # refused by a rule: scope, quota, validation, permission
    FAILED = "failed"  # attempted and broke


class AuditAction(StrEnum):
    """Every action the log knows, as ``area.verb``. Add here before recording a new one."""

    SYSTEM_INIT = "system.init"
    KEY_CREATE = "key.create"
    POLICY_LOAD = "policy.load"
    DATA_SYNTHESIZE = "data.synthesize"
    DATA_LOAD = "data.load"
    KEY_ROTATE = "key.rotate"
    ACCOUNT_CREATE = "account.create"
    AUTH_LOGIN = "auth.login"
    AUTH_TOKEN = "auth.token"  # noqa: S105 - an action name, not a secret
    AUTH_LOGOUT = "auth.logout"  # a console session ended by its holder
    OPERATOR_REGISTER = "operator.register"
    OPERATOR_CREDENTIALS = "operator.credentials"
    OPERATOR_CREDENTIALS_REVOKE = "operator.credentials_revoke"
    OPERATOR_SUSPEND = "operator.suspend"
    OPERATOR_REINSTATE = "operator.reinstate"
    REQUEST_DENIED = "request.denied"
    REQUEST_FAILED = "request.failed"  # an unexpected error (a 500): nothing it attempted committed
    AUTHORIZATION_REQUEST = "authorization.request"
    AUTHORIZATION_APPROVE = "authorization.approve"
    AUTHORIZATION_REJECT = "authorization.reject"
    AUTHORIZATION_REVOKE = "authorization.revoke"
    CONSENT_GRANT = "consent.grant"
    CONSENT_REVOKE = "consent.revoke"
    CODE_ACCEPT = "code.accept"  # a non-conforming credit code the bureau accepts (core.accepted_codes)
    CODE_WITHDRAW = "code.withdraw"
    AUDIT_EXPORT = "audit.export"
    VERIFICATION_RUN = "verification.run"
    AGGREGATE_RUN = "aggregate.run"
    PROGRAM_SUBMIT = "program.submit"
    PROGRAM_APPROVE = "program.approve"
    PROGRAM_REJECT = "program.reject"
    JOB_QUEUE = "job.queue"
    JOB_START = "job.start"  # outcome denied when a check at start refuses the job
    JOB_REQUEUE = "job.requeue"  # its worker's lease expired; it waits for another worker
    JOB_FINISH = "job.finish"  # succeeded (sealed) or failed
