"""Data intake: a file is checked whole against the policy, then replaces the table, or nothing."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import inspect, select

from catalog import Catalog, Classification, Dataset, Field, FieldFormat, FieldType, Use
from sandbox.data import load as load_module
from sandbox.data.load import LoadProblem, LoadRefused, LoadResult, load_file
from sandbox.data.stores import DataStores, StagedLoad, dataset_table, ensure_tables
from tests.factories import uscc

PERMIT_HEADER = ["credit_code", "holder", "issued", "staff", "fee", "active", "note"]


@pytest.fixture
def intake_catalog(catalog: Catalog) -> Catalog:
    """The shipped catalog plus ``permits``, a dataset with a field of every type."""

    def field(name: str, kind: FieldType, **extra: Any) -> Field:
        return Field(name=name, type=kind, classification=Classification.INTERNAL, **extra)

    permits = Dataset(
        name="permits",
        description="test dataset with every field type",
        key="credit_code",
        max_rows_per_subject=3,  # a firm may hold a few permits
        fields=[
            field("credit_code", FieldType.STRING, uses=[Use.KEY], format=FieldFormat.USCC),
            field("holder", FieldType.STRING),
            field("issued", FieldType.DATE),
            field("staff", FieldType.INTEGER),
            Field(name="fee", type=FieldType.NUMBER, classification=Classification.SENSITIVE),
            field("active", FieldType.BOOLEAN),
            field("note", FieldType.STRING, nullable=True),
        ],
    )
    return catalog.model_copy(update={"datasets": {**catalog.datasets, "permits": permits}})


@pytest.fixture
def stores(data_stores: DataStores, intake_catalog: Catalog) -> DataStores:
    """Data stores with every table of the intake catalog created, empty."""
    ensure_tables(data_stores, intake_catalog)
    return data_stores


def _csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _permit(code: str, header: list[str] = PERMIT_HEADER, **changes: str) -> list[str]:
    cells = {
        "secret": "undeclared",
        "credit_code": code,
        "holder": "济南泉城科技有限公司",
        "issued": "2023-05-17",
        "staff": "12",
        "fee": "2500.5",
        "active": "是",
        "note": "",
    }
    cells.update(changes)
    return [cells[name] for name in header]


def _table_rows(stores: DataStores, dataset: Dataset) -> list[tuple[Any, ...]]:
    """The table's rows ordered by key, the same in every store."""
    table = dataset_table(dataset)
    found = []
    for engine in stores.engines:
        with engine.connect() as conn:
            found.append([tuple(r) for r in conn.execute(select(table).order_by(table.c[dataset.key]))])
    assert all(rows == found[0] for rows in found)
    return found[0]


def _pairs(error: LoadRefused) -> set[tuple[int | None, str | None]]:
    return {(p.row, p.column) for p in error.problems}


def _load_good_permits(stores: DataStores, catalog: Catalog, tmp_path: Path) -> list[tuple[Any, ...]]:
    rows = [_permit("913701023C00001X2B"), _permit("913701023C00002X9N", note="备注")]
    load_file(stores, catalog, "permits", _csv(tmp_path / "good.csv", PERMIT_HEADER, rows))
    return _table_rows(stores, catalog.dataset("permits"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_good_csv_loads_with_chinese_values_exact(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, encoding: str
) -> None:
    dataset = intake_catalog.dataset("enterprises")
    header = ["status", "credit_code", "name", "district", "industry", "registered_capital"]
    header += ["established_date", "legal_rep_id"]  # a column order unlike the policy's
    rows = [
        ["存续", "913701023C00001X2B", "济南·泉城（历下）科技有限公司", "历下区", "制造业", "1000000"],
        ["注销", "913701023C00002X9N", "山东𠮷祥餐饮有限公司", "章丘区", "住宿和餐饮业", "2500.5"],
    ]
    rows[0] += ["2019-03-01", "370102199003070016"]
    rows[1] += ["2001-12-31", "370102198512310028"]
    path = _csv(tmp_path / "enterprises.csv", header, rows, encoding)

    result = load_file(stores, intake_catalog, "enterprises", path)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # Keyed by credit codes, both of them right: none fails its check.
    assert result == LoadResult(dataset="enterprises", rows=2, sha256=digest, format="csv", key_kind="uscc")
    assert _table_rows(stores, dataset) == [
        (
            *("913701023C00001X2B", "济南·泉城（历下）科技有限公司", "历下区", "制造业", 1e6),
            *(dt.date(2019, 3, 1), "存续", "370102199003070016"),
        ),
        (
            *("913701023C00002X9N", "山东𠮷祥餐饮有限公司", "章丘区", "住宿和餐饮业", 2500.5),
            *(dt.date(2001, 12, 31), "注销", "370102198512310028"),
        ),
    ]


def test_good_parquet_loads_with_compatible_types(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "note": pa.array([None, "备注"], pa.string_view()),
            "credit_code": pa.array(["913701023C00001X2B", "913701023C00002X9N"], pa.large_string()),
            "holder": pa.array(["济南泉城科技有限公司", "山东鲁中建筑有限公司"]).dictionary_encode(),
            "issued": pa.array([dt.datetime(2023, 5, 17), dt.datetime(2020, 2, 29)], pa.timestamp("ms")),
            "staff": pa.array([12, 0], pa.int32()),
            "fee": pa.array([decimal.Decimal("2500.50"), decimal.Decimal("0.25")], pa.decimal128(10, 2)),
            "active": [True, False],
        }
    )
    pq.write_table(table, tmp_path / "permits.parquet")

    result = load_file(stores, intake_catalog, "permits", tmp_path / "permits.parquet", batch_size=1)

    assert (result.rows, result.format) == (2, "parquet")
    assert _table_rows(stores, intake_catalog.dataset("permits")) == [
        ("913701023C00001X2B", "济南泉城科技有限公司", dt.date(2023, 5, 17), 12, 2500.5, True, None),
        ("913701023C00002X9N", "山东鲁中建筑有限公司", dt.date(2020, 2, 29), 0, 0.25, False, "备注"),
    ]


def test_csv_refused_listing_every_problem_and_nothing_loaded(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    before = _load_good_permits(stores, intake_catalog, tmp_path)
    header = [*(name for name in PERMIT_HEADER if name != "active"), "secret"]
    rows = [
        _permit("913701023C00010X9J", header, staff="1.0"),
        _permit("913701023C00011X5U", header, issued="2023-02-30"),
        _permit("913701023C00012X15", header),
        _permit("913701023C00013X8G", header, fee="NaN"),
        _permit("", header),
    ]
    path = _csv(tmp_path / "bad.csv", header, rows)

    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path, batch_size=2)

    assert _pairs(caught.value) == {
        (None, "active"),
        (None, "secret"),
        (1, "staff"),
        (2, "issued"),
        (4, "fee"),
        (5, "credit_code"),
    }
    assert caught.value.code == "load_refused"
    assert caught.value.status == 422
    assert "bad.csv" in caught.value.message
    assert "6 problems" in caught.value.message
    assert {"row": 1, "column": "staff", "message": "not an integer: '1.0'"} in caught.value.details
    assert _table_rows(stores, intake_catalog.dataset("permits")) == before


WRONG_FORMS: list[tuple[str, str]] = [
    ("staff", "12 "),
    ("staff", "9223372036854775808"),
    ("staff", "١٢"),  # digits, but not ASCII ones
    ("fee", "inf"),
    ("fee", "1e999"),
    ("fee", "1_000"),
    ("issued", "2023-5-17"),
    ("issued", "20230517"),
    ("active", "yes"),
    ("holder", ""),
    ("holder", "nul\x00byte"),
    ("credit_code", " 91370102MA3C00001X"),
    ("credit_code", "   "),
]


def test_csv_values_of_wrong_form_each_refused_by_row(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    rows = [
        _permit(uscc(f"91370102MA3C{i:05d}X"), PERMIT_HEADER, **{column: text})
        for i, (column, text) in enumerate(WRONG_FORMS)
    ]
    path = _csv(tmp_path / "forms.csv", PERMIT_HEADER, rows)
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path, batch_size=4)
    assert _pairs(caught.value) == {(row, column) for row, (column, _) in enumerate(WRONG_FORMS, start=1)}


def test_csv_accepts_every_boolean_spelling_and_empty_nullable(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    spellings = ["true", "FALSE", "1", "0", "是", "否", "True"]
    rows = [_permit(uscc(f"91370102MA3C0000{i}X"), active=s, fee="-1.5e3") for i, s in enumerate(spellings)]
    load_file(stores, intake_catalog, "permits", _csv(tmp_path / "b.csv", PERMIT_HEADER, rows))
    loaded = _table_rows(stores, intake_catalog.dataset("permits"))
    assert [r[5] for r in loaded] == [True, False, True, False, True, False, True]
    assert {(r[4], r[6]) for r in loaded} == {(-1500.0, None)}


def test_csv_invalid_utf8_ragged_row_and_repeated_column_refused(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    good = ",".join(_permit("913701023C00001X2B"))
    lines = [",".join([*PERMIT_HEADER, "staff"]), good + ",12", good, good + ",12"]
    path = tmp_path / "mixed.csv"
    path.write_bytes("\n".join(lines).encode().replace("泉城".encode(), b"\xff\xfe", 1) + b"\n")

    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path)

    assert _pairs(caught.value) == {(None, "staff"), (1, "holder"), (2, None)}
    assert "not valid UTF-8" in str(caught.value.details)


def test_values_of_sensitive_fields_stay_out_of_messages(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    path = _csv(tmp_path / "s.csv", PERMIT_HEADER, [_permit("913701023C00001X2B", fee="12,5")])
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path)
    assert caught.value.problems == [LoadProblem(1, "fee", "not a number")]


def test_parquet_wrong_column_type_refused_and_nothing_loaded(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    before = _load_good_permits(stores, intake_catalog, tmp_path)
    table = pa.table(
        {
            "credit_code": ["913701023C00009X3U"],
            "holder": pa.array([b"\xff\xfe"], pa.binary()).view(pa.string()),  # not UTF-8
            "issued": pa.array([dt.datetime(2023, 5, 17)], pa.timestamp("s", tz="Asia/Shanghai")),
            "staff": ["12"],
            "fee": [2500.5],
            "active": pa.array([1], pa.int8()),
            "note": pa.array([None], pa.string()),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")

    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", tmp_path / "typed.parquet")

    assert _pairs(caught.value) == {(None, "holder"), (None, "issued"), (None, "staff"), (None, "active")}
    assert "Parquet type string does not fit field type integer" in str(caught.value.details)
    assert _table_rows(stores, intake_catalog.dataset("permits")) == before


def test_parquet_values_refused_by_row(stores: DataStores, intake_catalog: Catalog, tmp_path: Path) -> None:
    table = pa.table(
        {
            "credit_code": ["913701023C00001X2B", "", "913701023C00003X50", "913701023C00004X19"],
            "holder": ["甲", None, "丙", "丁"],
            "issued": pa.array([dt.datetime(2023, 5, 17, 8, 30)] + [dt.datetime(2023, 5, 17)] * 3),
            "staff": pa.array([1, 2, 2**64 - 1, 4], pa.uint64()),
            "fee": [1.0, 2.0, 3.0, float("nan")],
            "active": [True, True, True, None],
            "note": [None, None, "nul\x00", None],
        }
    )
    pq.write_table(table, tmp_path / "values.parquet")

    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", tmp_path / "values.parquet", batch_size=3)

    assert _pairs(caught.value) == {
        (1, "issued"),  # a time of day
        (2, "credit_code"),
        (2, "holder"),
        (3, "staff"),  # beyond int64
        (3, "note"),  # NUL
        (4, "fee"),  # NaN
        (4, "active"),
    }


def test_second_load_replaces_first(stores: DataStores, intake_catalog: Catalog, tmp_path: Path) -> None:
    _load_good_permits(stores, intake_catalog, tmp_path)
    path = _csv(tmp_path / "second.csv", PERMIT_HEADER, [_permit("913701023C00099X8C", staff="7")])

    result = load_file(stores, intake_catalog, "permits", path)

    assert result.rows == 1
    rows = _table_rows(stores, intake_catalog.dataset("permits"))
    assert [(r[0], r[3]) for r in rows] == [("913701023C00099X8C", 7)]


FILES = {
    "permits.txt": b"credit_code\n",
    "permits.csv": b"credit_code\n",
    "empty.csv": b"\xef\xbb\xbf\n\n",
    "quotes.csv": ",".join(PERMIT_HEADER).encode() + b'\n"913701023C00001X2B"x,\n',
    "broken.parquet": b"PAR1 not really",
    # One field past the csv module's limit on the first line: that alone (it had also said "empty").
    "bigfield.csv": b'"' + b"x" * 140_000 + b'"\n',
}


@pytest.mark.parametrize(
    ("dataset", "name", "message"),
    [
        ("permits", "permits.txt", "unknown file type"),
        ("nope", "permits.csv", "known: enterprise_tax, enterprises"),
        ("permits", "absent.csv", "cannot read the file"),
        ("permits", "empty.csv", "the file is empty"),
        ("permits", "quotes.csv", "unreadable CSV at line 2"),
        ("permits", "broken.parquet", "not a readable Parquet file"),
        ("permits", "bigfield.csv", "unreadable CSV at line 1: field larger than field limit"),
    ],
)
def test_unusable_file_or_dataset_refused(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, dataset: str, name: str, message: str
) -> None:
    for present, content in FILES.items():
        (tmp_path / present).write_bytes(content)
    with pytest.raises(LoadRefused, match=message) as caught:
        load_file(stores, intake_catalog, dataset, tmp_path / name)
    assert caught.value.problems == [LoadProblem(None, None, caught.value.problems[0].message)]
    assert _table_rows(stores, intake_catalog.dataset("permits")) == []


def test_a_line_too_long_is_refused_before_it_is_read_whole(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in a sweep: a 200 MB file of one line took 576 MB before its first field was refused."""
    monkeypatch.setattr(load_module, "MAX_LINE_CHARS", 1000)
    path = tmp_path / "one-line.csv"
    path.write_text(",".join(PERMIT_HEADER) + "\n" + "9" * 5000, encoding="utf-8")  # no newline, ever
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path)
    assert [p.message for p in caught.value.problems] == ["unreadable CSV at line 2: over 1,000 characters"]


def test_problems_truncated_at_max_with_count_of_the_rest(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    rows = [_permit(uscc(f"91370102MA3C{i:05d}X"), staff="many") for i in range(10)]
    path = _csv(tmp_path / "many.csv", PERMIT_HEADER, rows)

    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", path, max_problems=3)

    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "staff"),
        (2, "staff"),
        (3, "staff"),
        (None, None),
    ]
    assert caught.value.problems[-1].message == "... and 7 more"
    assert "10 problems" in caught.value.message


def test_number_values_keep_double_precision_in_every_store(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    path = _csv(tmp_path / "p.csv", PERMIT_HEADER, [_permit("913701023C00001X2B", fee="1234567.89")])
    load_file(stores, intake_catalog, "permits", path)
    assert _table_rows(stores, intake_catalog.dataset("permits"))[0][4] == 1234567.89


def test_file_changed_during_load_refused_and_old_rows_kept(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _load_good_permits(stores, intake_catalog, tmp_path)
    path = _csv(tmp_path / "moving.csv", PERMIT_HEADER, [_permit("913701023C00050XXD")])

    class ChangedMidway(StagedLoad):
        """Another writer rewrites the file after it was checked, before it is written."""

        def __enter__(self) -> StagedLoad:
            _csv(path, PERMIT_HEADER, [_permit("913701023C00050XXD"), _permit("913701023C00051X6U")])
            return super().__enter__()

    monkeypatch.setattr("sandbox.data.load.StagedLoad", ChangedMidway)
    with pytest.raises(LoadRefused, match="the file changed while it was being loaded"):
        load_file(stores, intake_catalog, "permits", path)

    assert _table_rows(stores, intake_catalog.dataset("permits")) == before
    for engine in stores.engines:
        assert not [name for name in inspect(engine).get_table_names() if "__" in name]


def test_a_load_asked_to_stop_while_checking_writes_nothing(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    """The CLI's SIGTERM sets ``stop``; a file still being checked is not loaded at all."""
    import threading

    from sandbox.data.stores import LoadStopped

    before = _load_good_permits(stores, intake_catalog, tmp_path)
    stop = threading.Event()
    stop.set()
    path = _csv(tmp_path / "second.csv", PERMIT_HEADER, [_permit("913701023C00099X8C")])
    with pytest.raises(LoadStopped, match="data is unchanged"):
        load_file(stores, intake_catalog, "permits", path, stop=stop)
    assert _table_rows(stores, intake_catalog.dataset("permits")) == before


def test_a_refused_path_is_named_even_when_it_is_dot_or_root(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a sweep: ``sandbox data load permits .`` said " was refused", naming nothing."""
    monkeypatch.chdir(tmp_path)
    for path, shown in ((Path("."), tmp_path.name), (Path("/"), "/")):
        with pytest.raises(LoadRefused) as refused:
            load_file(stores, intake_catalog, "permits", path)
        assert refused.value.message.startswith(f"{shown} was refused"), refused.value.message


@pytest.mark.parametrize("batch_size", [1, 50_000])
def test_keys_failing_their_check_are_counted_not_refused(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, batch_size: int
) -> None:
    """A credit code whose check character is wrong loads (a real one may not conform) and is named."""
    good = uscc("913701023C00001X2B")
    bad = good[:17] + ("0" if good[17] != "0" else "1")
    rows = [_permit(good), _permit(bad), _permit(bad, note="again"), _permit("ABC")]
    path = _csv(tmp_path / "permits.csv", PERMIT_HEADER, rows)
    result = load_file(stores, intake_catalog, "permits", path, batch_size=batch_size)
    assert result.rows == 4
    assert result.failing_keys == frozenset({bad, "ABC"}) and not result.failing_keys_more
    # A dataset whose key has no id format is not checked.
    permits = intake_catalog.dataset("permits")
    key = permits.fields[0].model_copy(update={"format": None})
    unformatted = permits.model_copy(update={"fields": [key, *permits.fields[1:]]})
    other = intake_catalog.model_copy(
        update={"datasets": {**intake_catalog.datasets, "permits": unformatted}}
    )
    assert load_file(stores, other, "permits", path).failing_keys == frozenset()


def test_failing_keys_past_the_cap_are_cut_and_said_to_be_more(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sandbox.data.load.MAX_FAILING_KEYS", 3)
    rows = [_permit(f"91370102MA3C5X{n:04d}") for n in range(10)]
    result = load_file(
        stores, intake_catalog, "permits", _csv(tmp_path / "p.csv", PERMIT_HEADER, rows), batch_size=4
    )
    assert len(result.failing_keys) == 3 and result.failing_keys_more


@pytest.mark.parametrize("batch_size", [2, 50_000])
def test_a_subject_over_its_row_bound_is_refused_by_name_and_nothing_loaded(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path, batch_size: int
) -> None:
    """An aggregate's noise is scaled by the policy's rows per subject: data that breaks it never
    becomes the table, and the refusal names each subject over it with its count."""
    before = _load_good_permits(stores, intake_catalog, tmp_path)
    many, other = "913701023C00001X2B", "913701023C00002X9N"
    rows = [*(_permit(many, staff=str(n)) for n in range(4)), _permit(other), _permit(other)]
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", _csv(tmp_path / "many.csv", PERMIT_HEADER, rows),
                  batch_size=batch_size)  # fmt: skip
    assert caught.value.status == 422 and caught.value.code == "load_refused"
    assert caught.value.details == [
        {"row": None, "column": "credit_code", "message": f"{many}: 4 rows, over the 3 allowed"}
    ]
    assert caught.value.message.endswith(f"1 problem: {many}: 4 rows, over the 3 allowed")
    assert _table_rows(stores, intake_catalog.dataset("permits")) == before
    # At the bound, the same file loads.
    load_file(stores, intake_catalog, "permits", _csv(tmp_path / "ok.csv", PERMIT_HEADER, rows[1:]))
    assert len(_table_rows(stores, intake_catalog.dataset("permits"))) == 5


def test_two_rows_of_one_subject_with_one_row_key_are_refused(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    """With a row key (a tax year), one subject has at most one row per value of it."""
    permits = intake_catalog.dataset("permits").model_copy(update={"row_key": ["issued"]})
    keyed = intake_catalog.model_copy(update={"datasets": {**intake_catalog.datasets, "permits": permits}})
    code = "913701023C00001X2B"
    rows = [_permit(code, issued=day) for day in ("2023-05-17", "2023-05-17", "2024-01-02")]
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, keyed, "permits", _csv(tmp_path / "twice.csv", PERMIT_HEADER, rows))
    assert [p.message for p in caught.value.problems] == [
        f"{code}: 2 rows for issued 2023-05-17, where one is allowed"
    ]
    assert _table_rows(stores, permits) == []
    load_file(stores, keyed, "permits", _csv(tmp_path / "once.csv", PERMIT_HEADER, [rows[0], rows[2]]))
    assert len(_table_rows(stores, permits)) == 2


def test_a_refusal_lists_at_most_ten_subjects_over_the_bound_and_says_there_are_more(
    stores: DataStores, intake_catalog: Catalog, tmp_path: Path
) -> None:
    codes = [f"91370102MA3C5X{n:04d}" for n in range(12)]
    rows = [_permit(code) for code in codes for _ in range(4)]
    with pytest.raises(LoadRefused) as caught:
        load_file(stores, intake_catalog, "permits", _csv(tmp_path / "p.csv", PERMIT_HEADER, rows))
    messages = [p.message for p in caught.value.problems]
    assert messages == [*(f"{code}: 4 rows, over the 3 allowed" for code in codes[:10]),
                        "... and more subjects with over 3 rows"]  # fmt: skip
