"""The operator's pages: its contracts with usage and ε left, its jobs, its sealed results.

Every query is scoped to the signed-in operator; another operator's contract reads as missing (404).
"""

from __future__ import annotations

from flask import render_template

from authz import contracts
from authz.permissions import Permission, allows
from authz.usage import usage
from sandbox.compute import jobs
from sandbox.services import console as console_service
from sandbox.web.console import page, runtime, user


def _scope() -> str | None:
    """The operator whose data the caller may see; ``None`` for staff, who may read all."""
    caller = user()
    return None if allows(caller.role, Permission.AUTHORIZATIONS_READ_ALL) else caller.id


@page("/operator", permission=Permission.JOBS_READ_OWN)
def operator_home() -> str:
    """Contracts with today's calls and ε left; jobs; sealed results with a copy button."""
    rt = runtime()
    with rt.sessions() as session:
        now = rt.clock()
        mine = contracts.list_contracts(session, operator_id=user().id, status=None, now=now)
        rows = [(c, c.effective_status(now).value, usage(session, c, now)) for c in mine]
        sealed = console_service.sealed_results(session, user().id)
        mine_jobs = jobs.list_jobs(session, operator_id=user().id, status=None, program_id=None)
        return render_template("operator/home.html", rows=rows, sealed=sealed, jobs=mine_jobs)


@page("/operator/contracts/<contract_id>", permission=Permission.AUTHORIZATIONS_READ)
def operator_contract(contract_id: str) -> str:
    """One of the operator's contracts; another operator's is 404, as in the API."""
    rt = runtime()
    with rt.sessions() as session:
        contract = contracts.get_contract(session, contract_id, operator_id=_scope())
        now = rt.clock()
        return render_template(
            "operator/contract.html",
            contract=contract,
            status=contract.effective_status(now).value,
            operator_name=console_service.operator_names(session).get(contract.operator_id, ""),
            fields=console_service.contract_fields(rt.catalog, contract),
            limits=console_service.limits_beside_policy(rt.catalog, contract),
            usage=usage(session, contract, now),
        )
