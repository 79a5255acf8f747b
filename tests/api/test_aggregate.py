"""POST /v1/aggregate: checked spec, small cells suppressed, clamped, noised, charged once, sealed."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.contract_models import Authorization
from core.clock import utcnow
from core.db import transaction
from core.seals import verify_seal
from sandbox.engine.models import AggregateAnswer, SealedResult
from sandbox.runtime import Runtime
from tests.api.conftest import Party
from tests.engine import rows
from tests.factories import make_contract, uscc

SCOPE = {
    "enterprises": ["credit_code", "district", "industry", "registered_capital", "established_date", "status"]
}
TARGET_CAPITAL = 7_654_321.0
TARGET_DAY = date(2011, 3, 14)
OUTLIER = 1e15  # far above the policy bound of 1e9
LIXIA_FIRMS = 150


@pytest.fixture
def data(runtime: Runtime) -> None:
    """历下区: 150 firms of 1,000,000 capital, one of them an outlier, one the target; 市中区: 3 firms.

    150, so that 历下区's cell is released at the ε these tests ask (its noisy count must pass the
    minimum cell size plus a margin that grows as the count's share of ε shrinks)."""
    firms = [rows.enterprise(uscc(f"91370102MA3C{i:06d}"), district="历下区") for i in range(LIXIA_FIRMS)]
    firms[0]["registered_capital"] = OUTLIER
    firms[1].update(registered_capital=TARGET_CAPITAL, established_date=TARGET_DAY)
    firms += [rows.enterprise(uscc(f"91370103MA3C{i:06d}"), district="市中区") for i in range(3)]
    rows.write(runtime.stores, runtime.catalog, {"enterprises": firms})


def _contract(runtime: Runtime, operator: Party, **overrides: Any) -> Authorization:
    args: dict[str, Any] = {
        "datasets": SCOPE,
        "operations": ["aggregate"],
        "epsilon_total": 5.0,
        "epsilon_per_query": 1.0,
        "daily_quota": 1000,
        "min_cell_size": 10,
        "now": utcnow() - timedelta(minutes=1),
        **overrides,
    }
    with transaction(runtime.sessions) as session:
        return make_contract(session, operator_id=operator.id, **args)


def _ask(client: FlaskClient, operator: Party, contract: Authorization, **spec: Any) -> Any:
    body = {"authorization_id": contract.id, "dataset": "enterprises", "metrics": [{"op": "count"}], **spec}
    return client.post("/v1/aggregate", json=body, headers=operator.headers)


def _spent(runtime: Runtime, contract: Authorization) -> float:
    with runtime.sessions() as session:
        found = session.get(Authorization, contract.id)
        assert found is not None
        return found.epsilon_spent


LIXIA = [{"field": "district", "op": "eq", "value": "历下区"}]


@pytest.mark.usefixtures("data")
def test_small_cells_are_suppressed_and_keys_come_from_the_key_set(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    response = _ask(client, operator, contract, group_by=["district"], epsilon=1.0)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [row["district"] for row in body["rows"]] == ["历下区"]  # 市中区 has 3 firms: under 10
    assert body["suppressed_groups"] == 11  # the other 11 districts of the public key set
    assert isinstance(body["rows"][0]["count"], int) and body["rows"][0]["count"] >= 10
    assert body["min_cell_size"] == 10 and body["epsilon_spent"] == 1.0


@pytest.mark.usefixtures("data")
def test_a_contracts_higher_minimum_cell_size_applies(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator, min_cell_size=LIXIA_FIRMS + 1)
    body = _ask(client, operator, contract, group_by=["district"]).get_json()
    assert body["rows"] == [] and body["suppressed_groups"] == 12 and body["min_cell_size"] == LIXIA_FIRMS + 1


@pytest.mark.usefixtures("data")
def test_an_outlier_is_clamped_to_the_policy_bound(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    metrics = [{"op": "sum", "field": "registered_capital"}, {"op": "mean", "field": "registered_capital"}]
    body = _ask(client, operator, contract, metrics=metrics, filters=LIXIA, epsilon=1.0).get_json()
    row = body["rows"][0]
    # Clamped, the outlier weighs 1e9 (the bound): the true clamped sum is about 1.04e9 and the
    # noise's scale is 2e9 here; unclamped it would be 1e15, hundreds of thousands of scales away.
    assert abs(row["sum_registered_capital"]) < 1e12
    assert 0 <= row["mean_registered_capital"] <= 1e9


@pytest.mark.usefixtures("data")
def test_differencing_two_overlapping_queries_gives_no_exact_value(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    metrics = [{"op": "sum", "field": "registered_capital"}]
    everyone = _ask(client, operator, contract, metrics=metrics, filters=LIXIA, epsilon=1.0).get_json()
    others = [*LIXIA, {"field": "established_date", "op": "ne", "value": TARGET_DAY.isoformat()}]
    without = _ask(client, operator, contract, metrics=metrics, filters=others, epsilon=1.0).get_json()
    difference = everyone["rows"][0]["sum_registered_capital"] - without["rows"][0]["sum_registered_capital"]
    assert difference != TARGET_CAPITAL
    assert abs(difference - TARGET_CAPITAL) > 1.0  # not even close to the cent: noise of scale 1e9
    assert (
        everyone["rows"][0]["sum_registered_capital"] != (LIXIA_FIRMS - 2) * 1_000_000 + TARGET_CAPITAL + 1e9
    )


@pytest.mark.usefixtures("data")
def test_the_same_query_returns_the_same_answer_and_charges_once(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    metrics = [{"op": "count"}, {"op": "sum", "field": "registered_capital"}]
    first = _ask(client, operator, contract, metrics=metrics, filters=LIXIA, epsilon=0.5).get_json()
    again = [
        _ask(client, operator, contract, metrics=metrics[::-1], filters=LIXIA, epsilon=0.5).get_json()
        for _ in range(5)
    ]
    for answer in again:
        assert answer["rows"] == first["rows"] and answer["seal"] == first["seal"]
        assert (answer["job_id"], answer["cached"], answer["charged"]) == (first["job_id"], True, 0.0)
    assert first["cached"] is False and first["charged"] == 0.5
    assert _spent(runtime, contract) == pytest.approx(0.5)
    # Equivalent, but not the same canonical query: answered afresh and charged.
    as_list = [{"field": "district", "op": "in", "value": ["历下区"]}]
    other = _ask(client, operator, contract, metrics=metrics, filters=as_list, epsilon=0.5).get_json()
    assert other["cached"] is False and other["job_id"] != first["job_id"]
    assert _spent(runtime, contract) == pytest.approx(1.0)
    with runtime.sessions() as session:
        assert len(session.execute(select(AggregateAnswer)).all()) == 2
        repeats = (
            session.execute(select(AuditEvent).where(AuditEvent.action == "aggregate.run")).scalars().all()
        )
    assert [e.details["cached"] for e in repeats] == [False, True, True, True, True, True, False]


@pytest.mark.parametrize(
    "epsilon",
    ["-1", "0", "NaN", "1e400", "-1e400", "1e9", '"0.5"', "true", "1.0000001", "5e-324", "0.0009"],
)
@pytest.mark.usefixtures("data")
def test_bad_epsilon_is_refused_and_charges_nothing(
    runtime: Runtime, client: FlaskClient, operator: Party, epsilon: str
) -> None:
    contract = _contract(runtime, operator)
    spec = {"authorization_id": contract.id, "dataset": "enterprises", "metrics": [{"op": "count"}]}
    body = json.dumps(spec)
    raw = body[:-1] + f', "epsilon": {epsilon}}}'
    response = client.post(
        "/v1/aggregate", data=raw, content_type="application/json", headers=operator.headers
    )
    assert response.status_code in (400, 422), response.get_json()
    assert response.get_json()["error"]["code"] in ("bad_request", "invalid")
    assert _spent(runtime, contract) == 0.0


@pytest.mark.usefixtures("data")
def test_overspending_is_refused_and_charges_nothing(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator, epsilon_total=1.0, epsilon_per_query=0.5)
    first = _ask(client, operator, contract, epsilon=0.5)
    second = _ask(client, operator, contract, epsilon=0.4, group_by=["status"])
    assert first.status_code == second.status_code == 200
    refused = _ask(client, operator, contract, epsilon=0.2, group_by=["industry"])
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "budget_exhausted"
    assert _spent(runtime, contract) == pytest.approx(0.9)
    # Each answer's δ is its share of the contract's ε times the policy's 10⁻⁵: spending ε holds
    # the contract's δ to 10⁻⁵ too.
    deltas = [first.get_json()["delta"], second.get_json()["delta"]]
    assert deltas == [pytest.approx(5e-6), pytest.approx(4e-6)] and sum(deltas) <= 1e-5
    # A repeat is still answered: the cache charges nothing.
    assert _ask(client, operator, contract, epsilon=0.5).get_json()["cached"] is True


@pytest.mark.usefixtures("data")
def test_every_problem_of_a_spec_is_listed(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    contract = _contract(runtime, operator)
    response = _ask(
        client,
        operator,
        contract,
        metrics=[
            {"op": "sum", "field": "district"},  # a string: not allowed for aggregate
            {"op": "max", "field": "registered_capital"},  # releases one subject's value
            {"op": "sum", "field": "registered_capital", "bounds": [0, 1e15]},  # bounds are policy's
            {"op": "median", "field": "registered_capital"},
            {"op": "count", "q": 0.5},  # only a quantile takes q: refused, not dropped
        ],
        group_by=["registered_capital", "legal_rep_id"],
        filters=[
            {"field": "legal_rep_id", "op": "eq", "value": "370102198001011237"},
            {"field": "status", "op": "lt", "value": "存续"},
            {"field": "registered_capital", "op": "between", "value": [5, 1]},
        ],
        epsilon=0.5,
    )
    assert response.status_code == 422, response.get_json()
    fields = [p["field"] for p in response.get_json()["error"]["details"]]
    assert fields == [
        "metrics[0].field",
        "metrics[1].op",
        "metrics[2].bounds",
        "metrics[3].op",
        "metrics[4].q",
        "group_by[0]",
        "group_by[1]",
        "filters[0].field",
        "filters[1].op",
        "filters[2].value",
    ]
    assert _spent(runtime, contract) == 0.0


def test_a_filter_given_twice_is_refused_not_charged_as_another_question(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found by a sweep: [F, F] hashed apart from [F], so the same question was charged again."""
    contract = _contract(runtime, operator)
    district = {"field": "district", "op": "eq", "value": "历下区"}
    response = _ask(
        client,
        operator,
        contract,
        metrics=[{"op": "count"}],
        filters=[
            district,
            {"field": "registered_capital", "op": "gt", "value": "many"},
            {"field": "registered_capital", "op": "in", "value": [2.5, 1]},
            {**district},
            {"field": "registered_capital", "op": "in", "value": [1, 2.5, 1]},  # the same set
        ],
        epsilon=0.5,
    )
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["details"] == [
        {"field": "filters[1].value", "message": "a number"},
        {"field": "filters[3]", "message": "the same filter as filters[0]"},
        {"field": "filters[4]", "message": "the same filter as filters[2]"},
    ]
    assert _spent(runtime, contract) == 0.0


@pytest.mark.usefixtures("data")
def test_fields_beyond_the_contract_are_out_of_scope(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator, datasets={"enterprises": ["district"]})
    response = _ask(client, operator, contract, metrics=[{"op": "sum", "field": "registered_capital"}])
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "out_of_scope"
    no_aggregate = _contract(runtime, operator, operations=["verify:enterprise_active"])
    assert _ask(client, operator, no_aggregate).get_json()["error"]["code"] == "out_of_scope"
    other_dataset = _ask(client, operator, contract, dataset="enterprise_tax")
    assert other_dataset.get_json()["error"]["code"] == "out_of_scope"


@pytest.mark.usefixtures("data")
def test_the_answer_is_sealed_logged_and_stored(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    body = _ask(client, operator, contract, group_by=["district"], epsilon=0.25).get_json()
    sealed = verify_seal(body["seal"], client.get("/.well-known/jwks.json").get_json())
    for name in ("rows", "suppressed_groups", "epsilon_spent", "job_id", "query_sha256", "audit_seq"):
        assert sealed[name] == body[name]
    assert sealed["kind"] == "aggregate" and sealed["authorization_id"] == contract.id
    with runtime.sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.seq == body["audit_seq"])).scalar_one()
        stored = session.get(SealedResult, body["job_id"])
    assert event.action == "aggregate.run" and event.details["epsilon"] == 0.25
    assert stored is not None and stored.kind == "aggregate" and stored.seal == body["seal"]


@pytest.mark.usefixtures("data")
def test_histogram_and_quantile(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    contract = _contract(runtime, operator)
    metrics = [
        {"op": "histogram", "field": "registered_capital", "bins": 4},
        {"op": "quantile", "field": "registered_capital", "q": 0.5},
    ]
    body = _ask(client, operator, contract, metrics=metrics, filters=LIXIA, epsilon=1.0).get_json()
    row = body["rows"][0]
    histogram = row["histogram_registered_capital"]
    assert histogram["edges"] == [0.0, 2.5e8, 5e8, 7.5e8, 1e9]
    assert len(histogram["counts"]) == 4 and all(isinstance(c, int) and c >= 0 for c in histogram["counts"])
    assert 0 <= row["quantile_0.5_registered_capital"] <= 1e9


@pytest.mark.usefixtures("data")
def test_one_metric_per_answer_column(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    """Two histograms of one field would share a column: one answer lost, both charged. Refused."""
    contract = _contract(runtime, operator)
    metrics = [
        {"op": "histogram", "field": "registered_capital", "bins": 4},
        {"op": "histogram", "field": "registered_capital", "bins": 8},
    ]
    response = _ask(client, operator, contract, metrics=metrics, filters=LIXIA, epsilon=0.2)
    assert response.status_code == 422, response.get_json()
    twice = "histogram_registered_capital is asked twice (one per field and op)"
    assert response.get_json()["error"]["details"] == [{"field": "metrics[1]", "message": twice}]
    assert _spent(runtime, contract) == 0.0


@pytest.mark.usefixtures("data")
def test_a_number_asked_in_another_spelling_is_the_same_question(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """100 and 100.0 (and 0, 0.0, -0.0) of a number field hash the same: answered from the cache, free."""
    contract = _contract(runtime, operator)

    def ask(value: object) -> Any:
        filters = [*LIXIA, {"field": "registered_capital", "op": "gt", "value": value}]
        answer = _ask(client, operator, contract, filters=filters, epsilon=0.1)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    first = ask(100)
    assert [ask(100.0)["job_id"], ask(1e2)["job_id"]] == [first["job_id"]] * 2
    zero = ask(0)
    assert {ask(0.0)["job_id"], ask(-0.0)["job_id"]} == {zero["job_id"]}
    assert _spent(runtime, contract) == pytest.approx(0.2)  # two questions, each charged once


def test_the_example_of_api_md_is_answered_as_it_shows(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """The aggregate of ../shared/API.md, as a client would copy it (its authorization id filled
    in): its fields are the shipped catalog's, and the answer has the columns it shows."""
    # 1,000 firms. The example filters no year, so a firm may have five rows (one per tax year) in
    # it and every noise is five times one row's; the cell's subjects are counted with a share of
    # their own (ε 0.5 over four: 1/8) and must pass the minimum plus a margin of 617
    # (sandbox.engine.privacy), noised at scale 40.
    taxes = [rows.tax(uscc(f"91370102MA3C{i:06d}"), 2024, 50_000.0 + i) for i in range(1000)]
    rows.write(runtime.stores, runtime.catalog, {"enterprise_tax": taxes})  # 历下区, 制造业
    with transaction(runtime.sessions) as session:
        contract = make_contract(
            session,
            operator_id=operator.id,
            datasets={"enterprise_tax": ["annual_tax", "industry", "district"]},
            operations=["aggregate"],
            epsilon_total=5.0,
            epsilon_per_query=1.0,
            daily_quota=10,
            now=utcnow() - timedelta(minutes=1),
        )
    example = {
        "authorization_id": contract.id,
        "dataset": "enterprise_tax",
        "metrics": [
            {"op": "count"},
            {"op": "sum", "field": "annual_tax"},
            {"op": "mean", "field": "annual_tax"},
        ],
        "group_by": ["industry"],
        "filters": [{"field": "district", "op": "eq", "value": "历下区"}],
        "epsilon": 0.5,
    }
    response = client.post("/v1/aggregate", json=example, headers=operator.headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {"rows", "suppressed_groups", "epsilon_spent", "epsilon_remaining", "job_id", "seal"} <= set(body)
    (row,) = body["rows"]
    assert set(row) == {"industry", "count", "sum_annual_tax", "mean_annual_tax"}
    assert row["industry"] == "制造业" and body["suppressed_groups"] == 12
    assert (body["epsilon_spent"], body["epsilon_remaining"]) == (0.5, 4.5)
    assert (body["rows_per_subject"], body["noisy_count_margin"]) == (5, 617)


def test_a_firms_tax_years_are_one_subject_and_the_answer_says_how_many_rows_it_may_weigh(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """60 firms with five tax years each: asked for 2024 alone, a firm is one row and 历下区 comes
    out; asked over every year, each firm may weigh five rows in the answer, so its noise is five
    times as large and the cell must hold far more firms (it does not here). Either way the sealed
    answer says ``rows_per_subject``, and each answer is charged its ε once."""
    taxes = [
        rows.tax(uscc(f"91370102MA3C{i:06d}"), year, 60_000.0)
        for i in range(60)
        for year in range(2020, 2025)
    ]
    rows.write(runtime.stores, runtime.catalog, {"enterprise_tax": taxes})
    contract = _contract(runtime, operator, datasets={"enterprise_tax": ["district", "year", "annual_tax"]})
    spec = {
        "dataset": "enterprise_tax",
        "metrics": [{"op": "count"}],
        "group_by": ["district"],
        "epsilon": 1.0,
    }
    pinned = _ask(client, operator, contract, filters=[{"field": "year", "op": "eq", "value": 2024}], **spec)
    assert pinned.status_code == 200, pinned.get_json()
    body = pinned.get_json()
    assert (body["rows_per_subject"], body["noisy_count_margin"], body["delta"]) == (
        1,
        14,
        pytest.approx(2e-6),
    )
    assert [row["district"] for row in body["rows"]] == ["历下区"]
    assert abs(body["rows"][0]["count"] - 60) < 30  # noise of scale 1
    every_year = _ask(client, operator, contract, **spec)
    assert every_year.status_code == 200, every_year.get_json()
    body = every_year.get_json()
    # Five rows a firm: the subjects' own count takes half of ε, and the answer's δ is its share of
    # the contract's (1.0 of 5.0, times the policy's 10⁻⁵): τ = ⌈5·ln(5 / (2·10⁻⁶))/0.5⌉ = 148, and
    # 60 firms would need noise of 98 at scale 10 to pass 158.
    assert (body["rows_per_subject"], body["noisy_count_margin"], body["delta"]) == (
        5,
        148,
        pytest.approx(2e-6),
    )
    assert body["rows"] == [] and body["suppressed_groups"] == 12
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert verify_seal(body["seal"], jwks)["rows_per_subject"] == 5
    assert _spent(runtime, contract) == pytest.approx(2.0)
