"""A policy that changes a dataset's shape over stored data: jobs reading a field whose column is
missing or of another type are refused (503 dataset_unavailable, audited), never a 500; the
rest serves on, and a load while the server runs is picked up without a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, insert, select, text

from audit import AuditEvent
from authz.contract_models import Authorization
from core.clock import utcnow
from core.db import transaction
from sandbox.data.stores import dataset_table
from sandbox.runtime import Runtime
from tests.api.conftest import Party
from tests.engine import rows
from tests.factories import make_consent, make_contract, uscc

TAX_2024 = {"threshold": 500_000, "year": 2024}
FIRMS = [uscc(f"91370102MA3C{i:06d}") for i in range(12)]


@pytest.fixture
def contract(runtime: Runtime, operator: Party) -> Authorization:
    rows.write(
        runtime.stores,
        runtime.catalog,
        {
            "enterprise_tax": [rows.tax(firm, 2024, 612_345.67) for firm in [rows.FIRM, *FIRMS]],
            "enterprises": [rows.enterprise(rows.FIRM)],
        },
    )
    now = utcnow() - timedelta(minutes=1)
    with transaction(runtime.sessions) as session:
        found = make_contract(
            session,
            operator_id=operator.id,
            datasets={
                "enterprise_tax": ["credit_code", "year", "annual_tax", "district"],
                "enterprises": ["credit_code", "status"],
            },
            operations=["verify:tax_paid_at_least", "verify:enterprise_active", "aggregate"],
            daily_quota=100,
            epsilon_total=5.0,
            epsilon_per_query=1.0,
            min_cell_size=1,
            now=now,
        )
        make_consent(
            session,
            subject_id=rows.FIRM,
            operator_id=operator.id,
            templates=["tax_paid_at_least", "enterprise_active"],
            now=now,
        )
        return found


def _rename(runtime: Runtime, before: str, after: str) -> None:
    """What an older load left: the column under another name, in every store."""
    for engine in runtime.stores.engines:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE enterprise_tax RENAME COLUMN {before} TO {after}"))


def _verify(client: FlaskClient, operator: Party, contract: Authorization, template: str) -> Any:
    params = TAX_2024 if template == "tax_paid_at_least" else {}
    body = {"authorization_id": contract.id, "template": template, "subject": rows.FIRM, "params": params}
    return client.post("/v1/verify", json=body, headers=operator.headers)


def _aggregate(client: FlaskClient, operator: Party, contract: Authorization, *metrics: Any) -> Any:
    body = {
        "authorization_id": contract.id,
        "dataset": "enterprise_tax",
        "metrics": [{"op": "count"}, *metrics],
        "group_by": ["district"],
        "epsilon": 0.5,
    }
    return client.post("/v1/aggregate", json=body, headers=operator.headers)


def _refused(response: Any) -> None:
    assert response.status_code == 503, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "dataset_unavailable"
    assert "enterprise_tax" in error["message"] and "loads it again" in error["message"]


def _failures(runtime: Runtime) -> list[str | None]:
    with runtime.sessions() as session:
        query = select(AuditEvent.error_code).where(AuditEvent.action == "request.failed")
        return list(session.execute(query).scalars())


def test_a_field_the_policy_renamed_is_refused_and_the_rest_serves_on(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    _rename(runtime, "annual_tax", "tax_paid")
    _refused(_verify(client, operator, contract, "tax_paid_at_least"))
    _refused(_aggregate(client, operator, contract, {"op": "sum", "field": "annual_tax"}))
    assert _failures(runtime) == ["dataset_unavailable", "dataset_unavailable"]
    usage = client.get(f"/v1/authorizations/{contract.id}", headers=operator.headers).get_json()["usage"]
    assert usage["calls_today"] == 0 and usage["epsilon_spent"] == 0  # nothing charged
    # What reads only fields the stored table has is answered: another dataset, other fields.
    active = _verify(client, operator, contract, "enterprise_active")
    assert active.status_code == 200, active.get_json()
    counted = _aggregate(client, operator, contract)
    assert counted.status_code == 200, counted.get_json()
    assert client.get("/healthz").get_json()["stale_datasets"] == 1


def test_a_load_while_the_server_runs_is_picked_up_without_a_restart(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    _rename(runtime, "annual_tax", "tax_paid")
    _refused(_verify(client, operator, contract, "tax_paid_at_least"))
    _rename(runtime, "tax_paid", "annual_tax")  # as a load of the current shape leaves it
    answered = _verify(client, operator, contract, "tax_paid_at_least")
    assert answered.status_code == 200, answered.get_json()
    assert answered.get_json()["result"] is True
    assert client.get("/healthz").get_json()["stale_datasets"] == 0


def test_a_table_changed_after_it_was_found_right_is_refused_not_a_500(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    assert _verify(client, operator, contract, "tax_paid_at_least").status_code == 200
    assert _aggregate(client, operator, contract, {"op": "sum", "field": "annual_tax"}).status_code == 200
    _rename(runtime, "annual_tax", "tax_paid")  # a load under another policy, while the server runs
    _refused(_verify(client, operator, contract, "tax_paid_at_least"))
    _refused(_aggregate(client, operator, contract, {"op": "mean", "field": "annual_tax"}))


def test_a_column_of_another_type_is_refused(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    for engine in runtime.stores.engines:
        _retype_year(engine)
    _refused(_verify(client, operator, contract, "tax_paid_at_least"))


def _retype_year(engine: Engine) -> None:
    """year stored as text, as a load of a CSV under an older policy might have left it."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE enterprise_tax RENAME COLUMN year TO year_old"))
        conn.execute(text("ALTER TABLE enterprise_tax ADD COLUMN year TEXT"))
        conn.execute(text("UPDATE enterprise_tax SET year = CAST(year_old AS TEXT)"))


def test_rows_stored_before_the_bound_on_rows_per_subject_are_refused_to_aggregates(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    """The bound an aggregate's noise is scaled by is checked when data is loaded; a table stored
    before it (a home upgraded, or a policy tightened since) was never checked. Here a firm has
    two rows for 2024, so ``year eq 2024`` (m = 1) would weigh it twice at one row's noise, and
    count its rows for subjects at the minimum cell size: refused until loaded again, charging
    nothing; verifications, which noise nothing, serve on."""
    for engine in runtime.stores.engines:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO enterprise_tax SELECT * FROM enterprise_tax WHERE credit_code = :firm"),
                {"firm": rows.FIRM},
            )
    year = [{"field": "year", "op": "eq", "value": 2024}]
    body = {
        "authorization_id": contract.id,
        "dataset": "enterprise_tax",
        "metrics": [{"op": "count"}],
        "filters": year,
        "epsilon": 0.5,
    }
    _refused(client.post("/v1/aggregate", json=body, headers=operator.headers))
    usage = client.get(f"/v1/authorizations/{contract.id}", headers=operator.headers).get_json()["usage"]
    assert usage["calls_today"] == 0 and usage["epsilon_spent"] == 0
    verified = _verify(client, operator, contract, "tax_paid_at_least")
    assert verified.status_code == 200, verified.get_json()
    # Loaded again through the loader, which checks the bound: answered without a restart.
    rows.write(
        runtime.stores,
        runtime.catalog,
        {"enterprise_tax": [rows.tax(firm, 2024, 612_345.67) for firm in [rows.FIRM, *FIRMS]]},
    )
    answered = client.post("/v1/aggregate", json=body, headers=operator.headers)
    assert answered.status_code == 200, answered.get_json()
    assert answered.get_json()["rows_per_subject"] == 1


def test_a_stored_row_key_value_outside_its_key_set_is_refused_to_aggregates(
    runtime: Runtime, client: FlaskClient, operator: Party, contract: Authorization
) -> None:
    """``year ge 2024`` counts one year off the key set (2020-2024): a stored 2025 row, never
    checked by a load, would be a second row of the firm in it, at one row's noise."""
    table = dataset_table(runtime.catalog.dataset("enterprise_tax"))
    for engine in runtime.stores.engines:
        with engine.begin() as conn:
            found = conn.execute(select(table).where(table.c.credit_code == rows.FIRM)).mappings().first()
            assert found is not None
            conn.execute(insert(table).values({**found, "year": 2025}))
    body = {
        "authorization_id": contract.id,
        "dataset": "enterprise_tax",
        "metrics": [{"op": "count"}],
        "filters": [{"field": "year", "op": "ge", "value": 2024}],
        "epsilon": 0.5,
    }
    _refused(client.post("/v1/aggregate", json=body, headers=operator.headers))
    usage = client.get(f"/v1/authorizations/{contract.id}", headers=operator.headers).get_json()["usage"]
    assert usage["calls_today"] == 0 and usage["epsilon_spent"] == 0
