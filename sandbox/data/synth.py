"""Deterministic, streaming, realistic synthetic government data.

Enterprises are generated in chunks with everything that hangs off them (yearly tax and social
insurance, monthly utilities, public credit), then persons with their household registration and
property; each chunk is written through one :class:`StagedLoad`, so a run replaces all datasets
at once or not at all, and memory stays bounded. Every chunk draws from its own generator seeded
by ``(seed, part, chunk)``: the same arguments give the same rows.

Amounts are skewed as in life: log-normal capital and revenue, heavy-tailed headcounts that
follow revenue, seasonal electricity. A field the generator does not know (a policy added it)
is filled from the schema by :mod:`sandbox.data.mock`, so a changed policy never breaks synth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from catalog import Catalog
from sandbox.data import codes, names
from sandbox.data.mock import mock_column, random_dates
from sandbox.data.stores import ARROW_TYPES, DataStores, StagedLoad

Columns = dict[str, Any]
Progress = Callable[[str, int], None]

YEARS = np.arange(2020, 2025)
DISTRICTS = list(codes.JINAN_DIVISIONS)
DISTRICT_WEIGHTS = np.array([14, 12, 9, 9, 16, 5, 8, 4, 6, 2, 2, 2], dtype=float)
DIVISION_OF = np.array([int(codes.JINAN_DIVISIONS[d]) for d in DISTRICTS], dtype=np.int64)
INDUSTRIES = list(names.INDUSTRY_WORDS)
INDUSTRY_WEIGHTS = np.array([3, 12, 7, 30, 5, 6, 8, 1, 2, 12, 7, 5, 2], dtype=float)
STATUSES = ["存续", "在业", "吊销", "注销", "迁出"]
STATUS_WEIGHTS = np.array([62, 30, 3, 4, 1], dtype=float)
GRADES = ["A", "B", "M", "C", "D"]
GRADE_WEIGHTS = np.array([15, 45, 25, 10, 5], dtype=float)
SEASON = np.array([1.15, 1.05, 0.95, 0.9, 0.95, 1.1, 1.25, 1.25, 1.0, 0.9, 0.95, 1.1])


def _choice(rng: np.random.Generator, n: int, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return rng.choice(len(weights), size=n, p=weights / weights.sum())


def _take(values: list[str], index: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    return np.asarray(values)[index]


def _enterprises(rng: np.random.Generator, start: int, n: int) -> tuple[Columns, dict[str, Any]]:
    district = _choice(rng, n, DISTRICT_WEIGHTS)
    industry = _take(INDUSTRIES, _choice(rng, n, INDUSTRY_WEIGHTS))
    individual = (rng.random(n) < 0.15).astype(np.int64)
    # Most firms are young: years since founding fall off exponentially.
    founded_year = np.clip(2024 - np.floor(rng.exponential(7.0, n)), 1995, 2024).astype(np.int64)
    founded = np.array([f"{y}-01-01" for y in founded_year], dtype="datetime64[D]")
    founded = founded + rng.integers(0, 365, n).astype("timedelta64[D]")
    capital = np.round(rng.lognormal(np.log(1e6), 1.3, n) * np.where(individual == 1, 0.05, 1.0), -3)
    status = _take(STATUSES, _choice(rng, n, STATUS_WEIGHTS))
    columns = {
        "credit_code": codes.generate_uscc(
            rng, DIVISION_OF[district], individual, np.arange(start, start + n)
        ),
        "name": names.firm_names(rng, industry),
        "district": _take(DISTRICTS, district),
        "industry": industry,
        "registered_capital": np.maximum(capital, 1000.0),
        "established_date": founded,
        "status": status,
        "legal_rep_id": _people_ids(rng, DIVISION_OF[district], 1955, 1995),
    }
    # Size drives revenue, headcount and power use; revenue grows with capital, sub-linearly.
    revenue_base = np.exp(rng.normal(np.log(np.maximum(capital, 1e4)) * 0.8 + 2.5, 0.8))
    traits = {
        "founded_year": founded_year,
        "revenue_base": revenue_base,
        "industry": industry,
        "district": columns["district"],
        "code": np.asarray(columns["credit_code"]),
        "active": np.isin(status, ["存续", "在业"]),
    }
    return columns, traits


def _people_ids(
    rng: np.random.Generator, divisions: npt.NDArray[np.int64], first: int, last: int
) -> list[str]:
    births = random_dates(rng, len(divisions), f"{first}-01-01", f"{last}-12-31")
    as_int = np.char.replace(np.datetime_as_string(births), "-", "").astype(np.int64)
    return codes.generate_resident_ids(divisions, as_int, rng.integers(0, 1000, len(divisions)))


def _yearly(rng: np.random.Generator, t: dict[str, Any]) -> tuple[Columns, Columns]:
    """Tax and social-insurance rows for every year since founding."""
    years_per_firm = np.clip(2025 - np.maximum(t["founded_year"], 2020), 0, 5)
    firm = np.repeat(np.arange(len(years_per_firm)), years_per_firm)
    offsets = np.arange(len(firm)) - np.repeat(np.cumsum(years_per_firm) - years_per_firm, years_per_firm)
    year = 2025 - years_per_firm[firm] + offsets
    rows = len(firm)
    revenue = np.round(t["revenue_base"][firm] * 1.06 ** (year - 2020) * rng.lognormal(0, 0.25, rows), 2)
    small = t["revenue_base"][firm] < 5e6
    rate = np.where(small, rng.uniform(0.01, 0.03, rows), rng.uniform(0.03, 0.13, rows))
    tax = np.where(rng.random(rows) < 0.05, 0.0, np.round(revenue * rate, 2))
    employees = np.maximum(1, np.round(revenue / rng.lognormal(np.log(4e5), 0.5, rows))).astype(np.int64)
    shared = {
        "credit_code": t["code"][firm],
        "year": year,
        "district": t["district"][firm],
        "industry": t["industry"][firm],
    }
    tax_rows = {
        **shared,
        "taxpayer_type": np.where(small, "小规模纳税人", "一般纳税人"),
        "revenue": revenue,
        "annual_tax": tax,
        "tax_credit_grade": _take(GRADES, _choice(rng, rows, GRADE_WEIGHTS)),
    }
    si_rows = {
        **shared,
        "insured_employees": employees,
        "contributions": np.round(employees * rng.uniform(12_000, 25_000, rows), 2),
        "in_arrears": rng.random(rows) < 0.04,
    }
    return tax_rows, si_rows


def _utilities(rng: np.random.Generator, t: dict[str, Any]) -> Columns:
    """Twelve months of 2024 for operating firms with their own metered premises.

    Most small firms rent and their meters are in the landlord's name, so only about a third of
    firms (most manufacturers) hold utility accounts under their credit code.
    """
    own_premises = rng.random(len(t["code"])) < np.where(t["industry"] == "制造业", 0.8, 0.3)
    firms = np.flatnonzero(t["active"] & own_premises)
    firm = np.repeat(firms, 12)
    month = np.tile(np.arange(1, 13), len(firms))
    heavy = np.where(t["industry"][firm] == "制造业", 5.0, 1.0)
    kwh = t["revenue_base"][firm] / 400.0 * heavy * SEASON[month - 1] * rng.lognormal(0, 0.2, len(firm))
    return {
        "credit_code": t["code"][firm],
        "year": np.full(len(firm), 2024),
        "month": month,
        "district": t["district"][firm],
        "electricity_kwh": np.round(kwh, 1),
        "water_m3": np.round(kwh * 0.05 * rng.lognormal(0, 0.3, len(firm)), 1),
    }


def _public_credit(rng: np.random.Generator, t: dict[str, Any]) -> Columns:
    n = len(t["code"])
    dishonest = rng.random(n) < 0.02
    return {
        "credit_code": t["code"],
        "district": t["district"],
        "rating": _take(["A", "B", "C", "D"], _choice(rng, n, np.array([25, 50, 20, 5], dtype=float))),
        "dishonest_debtor": dishonest,
        "dishonest_cases": np.where(dishonest, rng.poisson(1.5, n) + 1, 0),
        "updated_date": random_dates(rng, n, "2024-01-01", "2024-12-31"),
    }


def _persons(rng: np.random.Generator, start: int, n: int, seen: set[str]) -> tuple[Columns, Columns]:
    district = _choice(rng, n, DISTRICT_WEIGHTS)
    birth_year = np.clip(np.round(rng.normal(1978, 15, n)), 1940, 2006).astype(np.int64)
    births = np.array([f"{y}-01-01" for y in birth_year], dtype="datetime64[D]")
    births = births + rng.integers(0, 365, n).astype("timedelta64[D]")
    male = rng.random(n) < 0.5
    sequence = rng.integers(0, 500, n) * 2 + male
    as_int = np.char.replace(np.datetime_as_string(births), "-", "").astype(np.int64)
    ids = _unique_ids(codes.generate_resident_ids(DIVISION_OF[district], as_int, sequence), seen)
    moved = rng.random(n) < 0.1  # one in ten lives where they were not born
    home = np.where(moved, _choice(rng, n, DISTRICT_WEIGHTS), district)
    home_names = _take(DISTRICTS, home)
    people = {
        "resident_id": ids,
        "name": names.person_names(rng, n),
        "gender": np.where(male, "男", "女"),
        "birth_year": birth_year,
        "district": home_names,
        "household_type": np.where(rng.random(n) < 0.93, "家庭户", "集体户"),
        "registered_date": births + rng.integers(0, 365 * 18, n).astype("timedelta64[D]"),
        "address": names.addresses(rng, home_names),
    }
    return people, _real_estate(rng, start, np.asarray(ids), home_names)


def _unique_ids(ids: list[str], seen: set[str]) -> list[str]:
    """Resolve the rare collision by stepping the sequence by two (keeping sex and check valid)."""
    out = []
    for number in ids:
        while number in seen:
            sequence = (int(number[14:17]) + 2) % 1000
            first17 = number[:14] + f"{sequence:03d}"
            number = first17 + codes.resident_id_check_char(first17)
        seen.add(number)
        out.append(number)
    return out


def _real_estate(
    rng: np.random.Generator, start: int, ids: npt.NDArray[np.str_], home: npt.NDArray[np.str_]
) -> Columns:
    n = len(ids)
    owned = np.where(rng.random(n) < 0.6, _choice(rng, n, np.array([0, 70, 22, 8], dtype=float)), 0)
    owner = np.repeat(np.arange(n), owned)
    rows = len(owner)
    elsewhere = rng.random(rows) < 0.2
    district = np.where(elsewhere, _take(DISTRICTS, _choice(rng, rows, DISTRICT_WEIGHTS)), home[owner])
    registered = random_dates(rng, rows, "2000-01-01", "2024-12-31")
    reg_year = np.datetime_as_string(registered, unit="Y")
    serial = np.char.zfill((np.arange(rows) + start * 3).astype(str), 7)
    return {
        "owner_id": ids[owner],
        "certificate_no": np.char.add(
            np.char.add(np.char.add(np.char.add("鲁(", reg_year), ")济南市不动产权第"), serial), "号"
        ),
        "district": district,
        "property_use": _take(
            ["住宅", "商业", "办公", "工业"], _choice(rng, rows, np.array([85, 6, 5, 4.0]))
        ),
        "area_m2": np.round(np.maximum(rng.lognormal(np.log(90), 0.35, rows), 15), 2),
        "registration_date": registered,
    }


def _write(load: StagedLoad, catalog: Catalog, name: str, columns: Columns, rng: np.random.Generator) -> int:
    if name not in catalog.datasets:
        return 0
    dataset = catalog.dataset(name)
    n = len(next(iter(columns.values())))
    arrays = [
        pa.array(columns[f.name] if f.name in columns else mock_column(f, n, rng), type=ARROW_TYPES[f.type])
        for f in dataset.fields
    ]
    load.write(name, pa.Table.from_arrays(arrays, names=[f.name for f in dataset.fields]))
    return n


def synthesize(
    stores: DataStores,
    catalog: Catalog,
    *,
    enterprises: int,
    persons: int,
    seed: int,
    batch_size: int = 100_000,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Replace every dataset with synthetic rows; returns rows written per dataset.

    Setting ``stop`` ends it at its next batch with :class:`~sandbox.data.stores.LoadStopped`,
    every dataset unchanged.
    """
    with StagedLoad(stores, list(catalog.datasets.values()), stop=stop) as load:
        for chunk, start in enumerate(range(0, enterprises, batch_size)):
            rng = np.random.default_rng([seed, 1, chunk])
            firms, traits = _enterprises(rng, start, min(batch_size, enterprises - start))
            tax, social = _yearly(rng, traits)
            for name, columns in (
                ("enterprises", firms),
                ("enterprise_tax", tax),
                ("social_insurance", social),
                ("utilities", _utilities(rng, traits)),
                ("public_credit", _public_credit(rng, traits)),
            ):
                _write(load, catalog, name, columns, rng)
            if progress:
                progress("enterprises", start + len(traits["code"]))
        seen: set[str] = set()
        for chunk, start in enumerate(range(0, persons, batch_size)):
            rng = np.random.default_rng([seed, 2, chunk])
            people, estate = _persons(rng, start, min(batch_size, persons - start), seen)
            _write(load, catalog, "household_registration", people, rng)
            _write(load, catalog, "real_estate", estate, rng)
            if progress:
                progress("persons", start + len(people["resident_id"]))
        rows = load.rows
    return rows
