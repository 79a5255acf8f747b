"""An aggregate protects a subject, not a row: a firm's five tax years weigh five rows' noise.

Found by a privacy sweep: ``enterprise_tax`` holds up to five rows per firm and ``utilities`` up to
sixty, but every sensitivity was one row's, so a query with no year filter spent up to five (or
sixty) times the ε of record on one firm, and the minimum cell size counted rows, so nine firms
with five years each made a cell of 45 "subjects".
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, insert, select

from catalog import Catalog, Use
from sandbox.data.stores import (
    DatasetStale,
    DataStores,
    TooManyRowsPerSubject,
    dataset_table,
    ensure_tables,
    subject_row_findings,
)
from sandbox.engine import privacy
from sandbox.engine.aggregate_sql import GroupTotals, run_aggregate_sql
from sandbox.engine.privacy import noisy_answer, threshold_margin
from sandbox.engine.spec import AggregateQuery, parse_query
from tests.engine import rows
from tests.factories import uscc

TAX_FIELDS = {"credit_code", "year", "district", "industry", "annual_tax", "revenue"}
UTILITY_FIELDS = {"credit_code", "year", "month", "district", "electricity_kwh", "water_m3"}


def _query(catalog: Catalog, dataset: str, filters: list[dict[str, Any]], **spec: Any) -> AggregateQuery:
    granted = {
        "enterprise_tax": TAX_FIELDS,
        "utilities": UTILITY_FIELDS,
        "enterprises": {"district", "registered_capital", "status"},
        "real_estate": {"district", "area_m2", "property_use", "registration_date"},
    }[dataset]
    metrics = spec.pop("metrics", [{"op": "count"}])
    body = {"metrics": metrics, "filters": filters, **spec}
    return parse_query(catalog.dataset(dataset), granted, body, 1.0)


def _eq(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": "eq", "value": value}


@pytest.mark.parametrize(
    ("dataset", "filters", "expected"),
    [
        ("enterprise_tax", [], 5),
        ("enterprise_tax", [_eq("district", "历下区")], 5),
        ("enterprise_tax", [_eq("year", 2024)], 1),
        ("enterprise_tax", [{"field": "year", "op": "in", "value": [2024, 2023, 2024]}], 2),
        ("enterprise_tax", [{"field": "year", "op": "between", "value": [2021, 2023]}], 3),
        ("enterprise_tax", [{"field": "year", "op": "between", "value": [1990, 2030]}], 5),
        # The year has a key set, 2020-2024, which a load holds the data to: any filter counts.
        ("enterprise_tax", [{"field": "year", "op": "ge", "value": 2024}], 1),
        ("enterprise_tax", [{"field": "year", "op": "ne", "value": 2024}], 4),
        ("enterprise_tax", [{"field": "year", "op": "lt", "value": 2023}], 3),
        ("enterprise_tax", [_eq("year", 2019)], 1),  # no row at all: no less than one
        ("enterprise_tax", [{"field": "year", "op": "in", "value": [2019, 2024, 2030]}], 1),
        # Two filters on the year: the narrower counts.
        ("enterprise_tax", [{"field": "year", "op": "in", "value": [2023, 2024]}, _eq("year", 2024)], 1),
        ("utilities", [], 60),
        ("utilities", [_eq("month", 3)], 5),  # March of each of five years
        ("utilities", [_eq("year", 2024)], 12),  # the month's key set: twelve
        ("utilities", [{"field": "month", "op": "le", "value": 6}, _eq("year", 2024)], 6),
        ("utilities", [_eq("year", 2024), {"field": "month", "op": "between", "value": [1, 3]}], 3),
        ("utilities", [{"field": "year", "op": "in", "value": [2023, 2024]}, _eq("month", 6)], 2),
        ("enterprises", [], 1),
        ("real_estate", [_eq("district", "历下区")], 5),  # no row key: a person's properties
    ],
)
def test_the_rows_a_subject_can_have_in_a_query(
    catalog: Catalog, dataset: str, filters: list[dict[str, Any]], expected: int
) -> None:
    assert _query(catalog, dataset, filters).rows_per_subject == expected


def test_a_cell_counts_its_subjects_and_nine_firms_stay_hidden_whatever_their_rows(
    data_stores: DataStores, catalog: Catalog
) -> None:
    """Nine firms with five tax years each are 45 rows but nine subjects: under a minimum of ten
    the cell is suppressed, on any noise, where the rows once passed it."""
    ensure_tables(data_stores, catalog)
    firms = [uscc(f"91370102MA3C{i:06d}") for i in range(9)]
    taxes = [rows.tax(code, year, 80_000.0) for code in firms for year in range(2020, 2025)]
    taxes.append(rows.tax(uscc("91370102MA3D000001"), 2024, 1.0, district="市中区"))
    rows.write(data_stores, catalog, {"enterprise_tax": taxes})
    query = _query(
        catalog, "enterprise_tax", [], metrics=[{"op": "count"}, {"op": "sum", "field": "annual_tax"}],
        group_by=["district"],
    )  # fmt: skip
    assert query.rows_per_subject == 5 and "credit_code" in query.fields
    with data_stores.scan.connect() as conn:
        totals = run_aggregate_sql(conn, query)
    lixia = totals[("历下区",)]
    assert (lixia.count, lixia.subject_count, lixia.sums["sum_annual_tax"]) == (45, 9, 45 * 80_000.0)
    assert totals[("市中区",)].subject_count == 1
    assert all(noisy_answer(query, totals, min_cell_size=10).rows == [] for _ in range(200))
    # With the year pinned, a firm is one row: the count is the subjects, and no key is read.
    pinned = _query(catalog, "enterprise_tax", [_eq("year", 2024)], group_by=["district"])
    assert pinned.rows_per_subject == 1 and "credit_code" not in pinned.fields
    with data_stores.scan.connect() as conn:
        lixia = run_aggregate_sql(conn, pinned)[("历下区",)]
    assert (lixia.count, lixia.subjects, lixia.subject_count) == (9, None, 9)


def test_every_noise_is_scaled_by_the_rows_a_subject_can_have(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Count, sum, mean, histogram and the hidden subject count each draw with m times one row's
    sensitivity, m = 5 with no year filter and 1 with one."""
    drawn: list[tuple[str, float]] = []

    def recording(name: str, real: type) -> Any:
        def make(**kwargs: Any) -> Any:
            drawn.append((name, kwargs["sensitivity"]))
            return real(**kwargs)

        return make

    monkeypatch.setattr(privacy, "Geometric", recording("geometric", privacy.Geometric))
    monkeypatch.setattr(privacy, "Laplace", recording("laplace", privacy.Laplace))
    metrics = [
        {"op": "count"},
        {"op": "sum", "field": "annual_tax"},
        {"op": "mean", "field": "annual_tax"},
        {"op": "histogram", "field": "annual_tax", "bins": 2},
    ]
    one_row = {"geometric": 1, "laplace": 50_000_000}  # bounds [0, 5e7]: a sum's and a half-range's
    for filters, m in (([], 5), ([_eq("year", 2024)], 1)):
        query = _query(catalog, "enterprise_tax", filters, metrics=metrics, group_by=["district"])
        totals = {("历下区",): GroupTotals(2_000, {"sum_annual_tax": 1e9, "mean_annual_tax": 1e9},
                                          {"histogram_annual_tax": [1_000, 1_000]}, 1_000)}  # fmt: skip
        drawn.clear()
        answer = noisy_answer(query, totals, min_cell_size=10)
        assert {name for name, _ in drawn} == {"geometric", "laplace"}
        laplace = {s for name, s in drawn if name == "laplace"}
        assert {s for name, s in drawn if name == "geometric"} == {m * one_row["geometric"]}
        assert laplace == {m * one_row["laplace"], m * one_row["laplace"] / 2}  # sum; mean's centred sum
        # The hidden subject count takes a share when m > 1 (count, sum, mean, histogram, subjects).
        share = 1.0 / (5 if m > 1 else 4)
        assert answer.margin == threshold_margin(share, m)
        assert 12 * len(metrics) < len(drawn)


def test_the_threshold_margin_holds_each_of_m_groups_to_delta_over_m() -> None:
    """τ = ⌈m·ln(m/δ)/ε⌉: the geometric noise of scale m/ε reaches it with probability under δ/m
    in each group one subject's m rows can reach, δ in all; one row each is the old margin."""
    import math

    for epsilon in (0.05, 0.125, 0.5, 1.0):
        assert threshold_margin(epsilon) == threshold_margin(epsilon, 1) == math.ceil(math.log(1e6) / epsilon)
        for m in (2, 5, 60):
            tau = threshold_margin(epsilon, m)
            tail = math.exp(-epsilon * tau / m) / (1 + math.exp(-epsilon / m))
            assert tail <= privacy.THRESHOLD_DELTA / m
            below = math.exp(-epsilon * (tau - 1) / m) / (1 + math.exp(-epsilon / m))
            assert below > privacy.THRESHOLD_DELTA / m / 2  # the least such τ, give or take


def test_an_answers_delta_is_its_share_of_the_contracts() -> None:
    """Answers whose ε adds up to the contract's total have δ adding up to the policy's total."""
    spends = [0.3, 0.25, 0.001, 0.449]
    deltas = [privacy.answer_delta(1e-5, epsilon, 1.0) for epsilon in spends]
    assert sum(deltas) == pytest.approx(1e-5) and sum(deltas) <= 1e-5 * (1 + 1e-12)
    assert privacy.answer_delta(1e-5, 2.0, 2.0) == 1e-5
    assert privacy.answer_delta(1e-5, 0.5, 5.0) == pytest.approx(1e-6)
    # A smaller δ needs a larger margin: ln(m/δ) grows as δ shrinks.
    assert threshold_margin(0.5, 1, 1e-7) > threshold_margin(0.5, 1, 1e-6) > threshold_margin(0.5, 1, 1e-5)


def test_a_row_key_without_a_key_set_is_counted_off_its_filters(catalog: Catalog) -> None:
    """No key set: only ``eq``, ``in`` and a ``between`` of integers or dates count values."""
    tax = catalog.dataset("enterprise_tax")
    year = tax.field("year").model_copy(update={"key_set": None, "uses": [Use.FILTER]})
    keyless = tax.model_copy(update={"fields": [year if f.name == "year" else f for f in tax.fields]})
    cases = [
        ([], 5),
        ([_eq("year", 2024)], 1),
        ([{"field": "year", "op": "in", "value": [2022, 2024]}], 2),
        ([{"field": "year", "op": "between", "value": [2021, 2022]}], 2),
        ([{"field": "year", "op": "between", "value": [2000, 2024]}], 5),
        ([{"field": "year", "op": "ge", "value": 2024}], 5),  # open: not counted
        (
            [
                {"field": "year", "op": "ge", "value": 2024},
                {"field": "year", "op": "in", "value": [2023, 2024]},
            ],
            2,
        ),
    ]
    for filters, expected in cases:
        query = parse_query(keyless, TAX_FIELDS, {"metrics": [{"op": "count"}], "filters": filters}, 1.0)
        assert query.rows_per_subject == expected, filters


def test_a_row_key_value_outside_its_key_set_is_refused_at_load(
    data_stores: DataStores, catalog: Catalog
) -> None:
    """A subject has one row per key at most only if the keys are all its values: a 2019 row would
    be a sixth year a firm, past the five the noise is scaled by."""
    ensure_tables(data_stores, catalog)
    code = uscc("91370102MA3C000001")
    with pytest.raises(TooManyRowsPerSubject) as caught:
        rows.write(
            data_stores, catalog, {"enterprise_tax": [rows.tax(code, 2019, 1.0), rows.tax(code, 2024, 1.0)]}
        )
    assert caught.value.findings == [("year", "2019: 1 row, not in the policy's key set")]
    assert caught.value.status == 422 and caught.value.code == "rows_per_subject"
    with data_stores.scan.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(dataset_table(catalog.dataset("enterprise_tax")))
            ).scalar()
            == 0
        )


def test_a_stored_row_key_without_a_value_is_refused_to_aggregates(
    data_stores: DataStores, catalog: Catalog
) -> None:
    """``year eq 2024`` of ``utilities`` counts twelve months off the key set; a firm's thirteenth
    2024 row with no month (a table stored while the policy let the month be empty) is none of
    the keys, so ``NOT IN`` passes it by, yet the query reads it: 13 rows at 12 rows' noise."""
    ensure_tables(data_stores, catalog)
    utilities = catalog.dataset("utilities")
    code = uscc("91370102MA3C000001")
    rows.write(data_stores, catalog, {"utilities": rows.utilities(code, 2024, 100.0)})
    table = dataset_table(utilities)
    with data_stores.scan.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE utilities ALTER COLUMN month DROP NOT NULL")
        lone = {**rows.utilities(code, 2024, 1e9)[0], "month": None}
        conn.execute(insert(table).values(lone))
    query = _query(catalog, "utilities", [_eq("year", 2024)])
    with data_stores.scan.connect() as conn:
        read = (
            select(func.count()).select_from(table).where(table.c.credit_code == code, table.c.year == 2024)
        )
        assert (query.rows_per_subject, conn.execute(read).scalar()) == (12, 13)
        assert subject_row_findings(conn, utilities, table) == [
            ("month", "no value: 1 row, where a row key needs one")
        ]
        with pytest.raises(DatasetStale):
            data_stores.require_row_bound(conn, data_stores.scan, utilities)


def test_a_load_checked_against_another_policy_is_checked_again(
    data_stores: DataStores, catalog: Catalog
) -> None:
    """From review: a loader checks against its own policy, which may be newer than a running
    server's (2025 added to the key set, the bound raised to six, the server not restarted). The
    server's check, once passed, was trusted for good; it is now made again after each recorded
    load (``loaded``), against the server's own policy."""
    ensure_tables(data_stores, catalog)
    tax = catalog.dataset("enterprise_tax")
    code = uscc("91370102MA3C000001")
    rows.write(data_stores, catalog, {"enterprise_tax": [rows.tax(code, 2024, 1.0)]})
    with data_stores.scan.connect() as conn:
        data_stores.require_row_bound(conn, data_stores.scan, tax, loaded=1)
    # The loader's newer policy lets 2025 in.
    year = tax.field("year")
    wider_year = year.model_copy(update={"key_set": [*(year.key_set or []), 2025]})
    wider = tax.model_copy(
        update={
            "max_rows_per_subject": 6,
            "fields": [wider_year if f.name == "year" else f for f in tax.fields],
        }
    )
    newer = catalog.model_copy(update={"datasets": {**catalog.datasets, "enterprise_tax": wider}})
    rows.write(data_stores, newer, {"enterprise_tax": [rows.tax(code, 2024, 1.0), rows.tax(code, 2025, 1.0)]})
    with data_stores.scan.connect() as conn:
        data_stores.require_row_bound(conn, data_stores.scan, tax, loaded=1)  # no load recorded since
        with pytest.raises(DatasetStale):
            data_stores.require_row_bound(conn, data_stores.scan, tax, loaded=2)
