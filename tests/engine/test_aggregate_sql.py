"""The aggregate's one SQL query on each scan engine, and the noise layer over its exact totals."""

from __future__ import annotations

import math

import pytest

from catalog import Catalog
from sandbox.data.stores import DataStores, ensure_tables
from sandbox.engine.aggregate_sql import run_aggregate_sql
from sandbox.engine.errors import JobInvalid, OutOfScope
from sandbox.engine.privacy import THRESHOLD_DELTA, _quantile, group_keys, noisy_answer, threshold_margin
from sandbox.engine.spec import AggregateQuery, parse_query
from tests.engine import rows
from tests.factories import uscc

ALL = {"credit_code", "district", "industry", "registered_capital", "established_date", "status"}


def _query(
    catalog: Catalog, spec: dict[str, object], epsilon: float = 1.0, granted: set[str] = ALL
) -> AggregateQuery:
    return parse_query(catalog.dataset("enterprises"), granted, spec, epsilon)


def test_values_are_clamped_in_sql_and_filters_bound(data_stores: DataStores, catalog: Catalog) -> None:
    ensure_tables(data_stores, catalog)
    firms = [rows.enterprise(uscc(f"91370102MA3C{i:06d}"), registered_capital=1000.0) for i in range(12)]
    firms[0]["registered_capital"] = 1e15  # clamped to the bound, 1e9
    firms[1]["registered_capital"] = -5.0  # clamped to 0
    firms.append(rows.enterprise("913701023CYYYYYY16", district="市中区", status="注销"))
    rows.write(data_stores, catalog, {"enterprises": firms})
    query = _query(
        catalog,
        {
            "metrics": [
                {"op": "sum", "field": "registered_capital"},
                {"op": "histogram", "field": "registered_capital", "bins": 4},
            ],
            "group_by": ["district"],
            "filters": [{"field": "status", "op": "in", "value": ["存续", "在业"]}],
        },
    )
    with data_stores.scan.connect() as conn:
        totals = run_aggregate_sql(conn, query)
    assert set(totals) == {("历下区",)}  # the 注销 firm is filtered out in SQL
    group = totals[("历下区",)]
    assert group.count == 12
    assert group.sums["sum_registered_capital"] == pytest.approx(1e9 + 0 + 10 * 1000.0)
    assert group.bins["histogram_registered_capital"] == [11, 0, 0, 1]  # the bound's top edge: last bin


def test_the_querys_work_does_not_depend_on_which_rows_its_filters_admit(
    data_stores: DataStores, catalog: Catalog
) -> None:
    """A filter that admits one firm (its exact capital) and one that admits none run the same
    expressions over the same rows and fetch the same groups. With the filters a WHERE, the first
    made the engine evaluate every aggregate and fetch a row, the second did neither: at ten
    metrics that was 1.7 ms of a 50 ms answer, and a sweep told the capital apart in 62% of single
    pairs of queries at ε 0.001 each (ε allows 50.05%), suppressed cells notwithstanding."""
    from sandbox.engine.aggregate_sql import compile_aggregate

    ensure_tables(data_stores, catalog)
    firms = [rows.enterprise(uscc(f"91370102MA3C{i:06d}")) for i in range(12)]
    firms[0]["registered_capital"] = 7_654_321.0
    rows.write(data_stores, catalog, {"enterprises": firms})
    fetched = []
    for value in (7_654_321.0, 7_654_322.0):
        spec = {
            "metrics": [{"op": "histogram", "field": "registered_capital", "bins": 4}],
            "group_by": ["status"],
            "filters": [{"field": "registered_capital", "op": "eq", "value": value}],
        }
        statement = compile_aggregate(_query(catalog, spec))
        assert "WHERE" not in str(statement).upper()  # a mask: every row through the same work
        with data_stores.scan.connect() as conn:
            fetched.append(sorted(row[0] for row in conn.execute(statement)))
            totals = run_aggregate_sql(conn, _query(catalog, spec))
        assert set(totals) == ({("存续",)} if value == 7_654_321.0 else set())
    assert fetched[0] == fetched[1] == sorted(catalog.dataset("enterprises").field("status").key_set or [])


def test_group_keys_come_from_the_key_sets_only(catalog: Catalog) -> None:
    # Group-by fields are held in canonical (sorted) order: keys are (district, status).
    query = _query(catalog, {"metrics": [{"op": "count"}], "group_by": ["status", "district"]})
    assert len(group_keys(query)) == 5 * 12
    from sandbox.engine.aggregate_sql import GroupTotals

    totals = {
        ("历下区", "存续"): GroupTotals(count=500, sums={}, bins={}),
        ("历下区", "秘密"): GroupTotals(500, {}, {}),
    }
    answer = noisy_answer(query, totals, min_cell_size=10)
    assert [(r["district"], r["status"]) for r in answer.rows] == [("历下区", "存续")]  # never "秘密"
    assert answer.suppressed_groups == 59 and answer.groups == 60


def test_the_least_epsilon_split_over_the_most_metrics_still_gives_noise(catalog: Catalog) -> None:
    """ε = EPSILON_MIN over MAX_METRICS metrics (a mean halves its share again): every mechanism
    still draws finite noise. Far below that floor diffprivlib refused (a share rounding to 0)
    or overflowed (an infinite scale), which surfaced as a 500."""
    from authz.contract_models import EPSILON_MIN
    from sandbox.engine.aggregate_sql import GroupTotals
    from sandbox.engine.spec import MAX_METRICS

    field = "registered_capital"
    metrics: list[dict[str, object]] = [
        {"op": "count"},
        {"op": "sum", "field": field},
        {"op": "mean", "field": field},
        {"op": "histogram", "field": field, "bins": 8},
        *({"op": "quantile", "field": field, "q": q / 10} for q in range(1, MAX_METRICS - 3)),
    ]
    assert len(metrics) == MAX_METRICS
    query = _query(catalog, {"metrics": metrics, "group_by": ["district"]}, epsilon=EPSILON_MIN)
    totals = {
        ("历下区",): GroupTotals(
            count=5_000,
            sums={"sum_registered_capital": 5e9, "mean_registered_capital": 5e9},
            bins={name: [600] * 8 + [0] * 24 for name in ("histogram_registered_capital",)}
            | {f"quantile_{q / 10:g}_{field}": [150] * 32 for q in range(1, MAX_METRICS - 3)},
        )
    }
    for _ in range(20):
        answer = noisy_answer(query, totals, min_cell_size=10)
        for row in answer.rows:
            for value in row.values():
                assert not isinstance(value, float) or math.isfinite(value), row


def test_canonical_form_ignores_order_but_not_meaning(catalog: Catalog) -> None:
    one = _query(
        catalog,
        {
            "metrics": [{"op": "count"}, {"op": "sum", "field": "registered_capital"}],
            "group_by": ["status", "district"],
        },
    )
    two = _query(
        catalog,
        {
            "metrics": [{"op": "sum", "field": "registered_capital"}, {"op": "count"}],
            "group_by": ["district", "status"],
        },
    )
    assert one.sha256 == two.sha256
    assert (
        _query(catalog, {"metrics": [{"op": "count"}]}, epsilon=0.5).sha256
        != _query(catalog, {"metrics": [{"op": "count"}]}).sha256
    )


def test_scope_and_policy_problems(catalog: Catalog) -> None:
    with pytest.raises(OutOfScope):
        _query(catalog, {"metrics": [{"op": "sum", "field": "registered_capital"}]}, granted={"district"})
    with pytest.raises(JobInvalid) as error:
        _query(
            catalog,
            {"metrics": [{"op": "quantile", "field": "registered_capital", "q": 1.5}], "filters": "x"},
        )
    assert [p["field"] for p in error.value.details] == ["metrics[0].q", "filters"]


def test_quantile_reads_the_histogram() -> None:
    edges = [0.0, 10.0, 20.0, 30.0, 40.0]
    assert _quantile([10, 10, 10, 10], edges, 0.5) == 20.0
    assert _quantile([0, 0, 0, 0], edges, 0.5) == 20.0  # nothing released: the midpoint
    assert _quantile([0, 4, 0, 0], edges, 0.25) == 12.5


@pytest.mark.parametrize("epsilon", [1e-3, 0.05, 1 / 6, 0.5, 1.0, 5.0])
def test_the_margin_keeps_a_cell_at_the_minimum_from_showing_beyond_delta(epsilon: float) -> None:
    """Two-sided geometric noise at ε reaches τ with probability e^(-ε τ) / (1 + e^(-ε))."""
    margin = threshold_margin(epsilon)
    assert math.exp(-epsilon * margin) / (1 + math.exp(-epsilon)) <= THRESHOLD_DELTA
    assert math.exp(-epsilon * (margin - 1)) / (1 + math.exp(-epsilon)) > THRESHOLD_DELTA / 10


@pytest.mark.parametrize("with_count", [True, False], ids=["count_asked", "count_of_its_own"])
def test_whether_a_cell_is_released_is_not_decided_on_its_exact_count_alone(
    catalog: Catalog, with_count: bool
) -> None:
    """Found by a privacy sweep: a cell was released exactly when it held the minimum, so filters
    leaving T - 1 other firms in it said at any ε whether the target matched (a firm's exact
    capital in 2,288 queries). Now a cell at T rows is released with probability δ, and one well
    past T plus the margin is; the released rows are the same kind either way."""
    from sandbox.engine.aggregate_sql import GroupTotals

    field = "registered_capital"
    metrics: list[dict[str, object]] = [{"op": "sum", "field": field}]
    if with_count:
        metrics.append({"op": "count"})
    query = _query(catalog, {"metrics": metrics, "group_by": ["district"]}, epsilon=1.0)
    share = 1.0 / 2
    margin = threshold_margin(share)

    def ask(count: int) -> list[str]:
        totals = {("历下区",): GroupTotals(count=count, sums={f"sum_{field}": count * 1e6}, bins={})}
        answer = noisy_answer(query, totals, min_cell_size=10)
        assert answer.margin == margin and answer.groups == 12
        return [row["district"] for row in answer.rows]

    assert all(ask(10) == [] for _ in range(100))  # at the minimum: released with probability ≤ δ
    assert all(ask(9) == [] for _ in range(20))  # under it: never
    assert all(ask(10 + margin + 60) == ["历下区"] for _ in range(300))  # 60 counts' noise (scale 2) away
    released = noisy_answer(
        query, {("历下区",): GroupTotals(count=500, sums={f"sum_{field}": 5e8}, bins={})}, min_cell_size=10
    ).rows
    assert set(released[0]) == {"district", f"sum_{field}", *(["count"] if with_count else [])}


@pytest.mark.parametrize("with_count", [True, False], ids=["count_asked", "count_of_its_own"])
def test_every_group_draws_the_same_noise_whatever_its_exact_count(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, with_count: bool
) -> None:
    """From review: a cell under the minimum (or with no row) had skipped its noise draws, so the
    answer's time (milliseconds for a query of histograms) said whether a cell held T - 1 rows or
    T, the oracle the noisy threshold closes. Every group now draws the same noise."""
    from sandbox.engine import privacy
    from sandbox.engine.aggregate_sql import GroupTotals

    draws = [0]

    class Counted:
        def __init__(self, real: type) -> None:
            self.real = real

        def __call__(self, **kwargs: object) -> object:
            draws[0] += 1
            return self.real(**kwargs)

    monkeypatch.setattr(privacy, "Geometric", Counted(privacy.Geometric))
    monkeypatch.setattr(privacy, "Laplace", Counted(privacy.Laplace))
    field = "registered_capital"
    metrics: list[dict[str, object]] = [
        {"op": "sum", "field": field},
        {"op": "mean", "field": field},
        {"op": "histogram", "field": field, "bins": 8},
        {"op": "quantile", "field": field, "q": 0.5},
    ]
    if with_count:
        metrics.append({"op": "count"})
    query = _query(catalog, {"metrics": metrics, "group_by": ["district"]}, epsilon=1.0)

    def drawn(totals: dict[tuple[object, ...], GroupTotals]) -> int:
        draws[0] = 0
        noisy_answer(query, totals, min_cell_size=10)
        return draws[0]

    def cell(count: int) -> dict[tuple[object, ...], GroupTotals]:
        bins = {m.name: [count] + [0] * (m.histogram_bins - 1) for m in query.metrics if m.histogram_bins}
        sums = {m.name: count * 1e6 for m in query.metrics if m.op.value in ("sum", "mean")}
        return {("历下区",): GroupTotals(count=count, sums=sums, bins=bins)}

    assert drawn({}) == drawn(cell(9)) == drawn(cell(10)) == drawn(cell(5000)) > 0


@pytest.mark.parametrize("name", ["subject", "subjects", "n", "v0", "s_v0", "b0", "one"])
def test_a_field_may_share_a_name_the_plan_gives_its_own_columns(data_stores: DataStores, name: str) -> None:
    """A policy may name a group-by field ``subject`` (a school's), ``n`` or ``v0``: the plan's own
    columns start with ``_``, which no field's can, so the query does not collide with it (it
    failed with SQLAlchemy's InvalidRequestError, a 500)."""
    import pyarrow as pa

    from catalog.models import Dataset
    from sandbox.data.stores import StagedLoad

    dataset = Dataset.model_validate(
        {
            "name": "scores",
            "description": "a subject's yearly scores",
            "key": "code",
            "max_rows_per_subject": 3,
            "row_key": ["year"],
            "fields": [
                {"name": "code", "type": "string", "classification": "internal", "uses": ["key"]},
                {"name": "year", "type": "integer", "classification": "public", "uses": ["filter"]},
                {"name": name, "type": "string", "classification": "public", "uses": ["group_by"],
                 "key_set": ["a", "b"]},
                {"name": "score", "type": "number", "classification": "internal", "uses": ["aggregate"],
                 "bounds": [0, 100]},
            ],
        }
    )  # fmt: skip
    with StagedLoad(data_stores, [dataset]) as load:
        load.write(
            "scores",
            pa.table(
                {
                    "code": ["x", "x", "y"],
                    "year": [2023, 2024, 2024],
                    name: ["a", "a", "b"],
                    "score": [10.0, 30.0, 50.0],
                }
            ),
        )
    granted = {"year", name, "score"}
    metrics = [
        {"op": "count"},
        {"op": "sum", "field": "score"},
        {"op": "histogram", "field": "score", "bins": 2},
    ]
    for filters, m in (([], 3), ([{"field": "year", "op": "eq", "value": 2024}], 1)):
        spec = {"metrics": metrics, "group_by": [name], "filters": filters}
        query = parse_query(dataset, granted, spec, 1.0)
        assert query.rows_per_subject == m
        with data_stores.scan.connect() as conn:
            totals = run_aggregate_sql(conn, query)
        a = totals[("a",)]
        if m == 3:
            assert (a.count, a.subject_count, a.sums["sum_score"], a.bins["histogram_score"]) == (
                2,
                1,
                40.0,
                [2, 0],
            )
        else:
            assert (a.count, a.subject_count, a.sums["sum_score"]) == (1, 1, 30.0)
    alone = parse_query(dataset, granted, {"metrics": [{"op": "count"}]}, 1.0)
    with data_stores.scan.connect() as conn:
        assert run_aggregate_sql(conn, alone)[()].subject_count == 2
