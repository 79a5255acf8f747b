"""The shipped catalog is valid; every kind of bad policy is refused naming its file and key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from catalog import Catalog, FieldType, PolicyError, Use, load_catalog
from tests.conftest import POLICIES


def test_shipped_catalog_has_the_bureau_datasets_and_templates(catalog: Catalog) -> None:
    assert {
        "enterprises",
        "enterprise_tax",
        "social_insurance",
        "utilities",
        "real_estate",
        "household_registration",
        "public_credit",
    } <= set(catalog.datasets)
    assert len(catalog.templates) >= 7
    assert catalog.template("electricity_usage_band").answer == "band"
    for dataset in catalog.datasets.values():
        assert dataset.key_field.allows(Use.KEY)
        for field in dataset.fields:
            if field.allows(Use.GROUP_BY):
                assert field.key_set, f"{dataset.name}.{field.name} needs a key set"
            if field.allows(Use.AGGREGATE):
                assert field.type.numeric and field.bounds is not None
    assert catalog.dataset("enterprises").field("registered_capital").type is FieldType.NUMBER
    # An aggregate's noise is scaled by these: a firm's tax years, a person's properties.
    bounds = {name: (d.max_rows_per_subject, d.row_key) for name, d in catalog.datasets.items()}
    assert bounds["enterprise_tax"] == bounds["social_insurance"] == (5, ["year"])
    assert bounds["utilities"] == (60, ["year", "month"]) and bounds["real_estate"] == (5, [])
    assert bounds["enterprises"] == bounds["household_registration"] == bounds["public_credit"] == (1, [])


def test_catalog_hash_changes_with_any_file(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    first = load_catalog(copy).sha256
    (copy / "disclosure.yaml").write_text((copy / "disclosure.yaml").read_text() + "\n# note\n")
    assert load_catalog(copy).sha256 != first


Mutation = Callable[[dict], None]


def _mutate(tmp_path: Path, relative: str, mutate: Mutation) -> Path:
    copy = tmp_path / "policies"
    if not copy.exists():
        shutil.copytree(POLICIES, copy)
    path = copy / relative
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return copy


def _field(data: dict, name: str) -> dict:
    return next(f for f in data["fields"] if f["name"] == name)


CASES: list[tuple[str, str, Mutation, str, str]] = [
    (
        "unknown top-level key",
        "datasets/enterprises.yaml",
        lambda d: d.update(owner="x"),
        "owner",
        "unknown key",
    ),
    (
        "unknown field key",
        "datasets/enterprises.yaml",
        lambda d: _field(d, "district").update(clasification="public"),
        "fields[2].clasification",
        "unknown key",
    ),
    (
        "unknown type",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "annual_tax").update(type="money"),
        "fields[6].type",
        "Input should be",
    ),
    (
        "unknown use",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "annual_tax").update(uses=["aggregate", "publish"]),
        "fields[6].uses[1]",
        "Input should be",
    ),
    (
        "forbidden field given a use",
        "datasets/enterprises.yaml",
        lambda d: _field(d, "legal_rep_id").update(uses=["filter"]),
        "fields[7].uses",
        "forbidden",
    ),
    (
        "aggregate without bounds",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "annual_tax").pop("bounds"),
        "fields[6].bounds",
        "clamping bounds",
    ),
    (
        "group-by without key set",
        "datasets/enterprises.yaml",
        lambda d: _field(d, "district").pop("key_set"),
        "fields[2].key_set",
        "key set",
    ),
    (
        "key naming a missing field",
        "datasets/enterprises.yaml",
        lambda d: d.update(key="uscc"),
        "key",
        "does not have",
    ),
    (
        "inverted bounds",
        "datasets/social_insurance.yaml",
        lambda d: _field(d, "insured_employees").update(bounds=[10, 1]),
        "fields[4].bounds",
        "below upper",
    ),
    (
        "an infinite bound (YAML's .inf): it clamps nothing, and its noise is infinite",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "annual_tax").update(bounds=[0, float("inf")]),
        "fields[6].bounds",
        "finite",
    ),
    (
        "an empty value weighing 0 outside the bounds a mean's noise is calibrated to",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "annual_tax").update(nullable=True, bounds=[1000, 50000000]),
        "fields[6].bounds",
        "needs 0 within its bounds",
    ),
    (
        "template naming a missing field",
        "templates.yaml",
        lambda d: d["templates"][0]["reduce"].update(field="tax_amount"),
        "templates[0].reduce.field",
        "does not have",
    ),
    (
        "template naming a missing dataset",
        "templates.yaml",
        lambda d: d["templates"][0].update(dataset="taxes"),
        "templates[0].dataset",
        "does not have",
    ),
    (
        "template reading a field not allowed for verify",
        "templates.yaml",
        lambda d: d["templates"][0]["where"].append({"field": "district", "op": "eq", "value": "历下区"}),
        "templates[0].where[1].field",
        "verify",
    ),
    (
        "template naming an undeclared parameter",
        "templates.yaml",
        lambda d: d["templates"][0]["test"].update(param="limit"),
        "templates[0].test.param",
        "not declared",
    ),
    (
        "band template with unordered edges",
        "templates.yaml",
        lambda d: d["templates"][-1]["bands"][1].update(below=10**9),
        "bands",
        "rise",
    ),
    (
        "a step on a string parameter",
        "templates.yaml",
        lambda d: d["templates"][7]["parameters"][0].update(step=5),  # household_in_district
        "step",
        "only for numeric",
    ),
    (
        "a step of an integer parameter that is not whole",
        "templates.yaml",
        lambda d: d["templates"][1]["parameters"][0].update(step=2.5),
        "step",
        "not a whole number",
    ),
    (
        "a step that is not positive",
        "templates.yaml",
        lambda d: d["templates"][0]["parameters"][0].update(step=0),
        "step",
        "greater than 0",
    ),
    (
        "a threshold without a step: answers at ever finer thresholds would spell the value out",
        "templates.yaml",
        lambda d: d["templates"][0]["parameters"][0].pop("step"),
        "templates[0].test.param",
        "needs a step",
    ),
    (
        "no rows per subject",
        "datasets/real_estate.yaml",
        lambda d: d.update(max_rows_per_subject=0),
        "max_rows_per_subject",
        "greater than or equal to 1",
    ),
    (
        "a row key on a dataset of one row per subject",
        "datasets/enterprise_tax.yaml",
        lambda d: d.update(max_rows_per_subject=1),
        "row_key",
        "more than one row per subject",
    ),
    (
        "a row key naming a missing field",
        "datasets/enterprise_tax.yaml",
        lambda d: d.update(row_key=["tax_year"]),
        "row_key[0]",
        "no field 'tax_year'",
    ),
    (
        "the key as its own row key",
        "datasets/utilities.yaml",
        lambda d: d.update(row_key=["year", "credit_code"]),
        "row_key[1]",
        "not the key",
    ),
    (
        "a row key no filter may pin",
        "datasets/enterprise_tax.yaml",
        lambda d: d.update(row_key=["annual_tax"]),
        "row_key[0]",
        "use 'filter'",
    ),
    (
        "a row key of real numbers, whose values no filter counts",
        "datasets/real_estate.yaml",
        lambda d: d.update(row_key=["area_m2"]),
        "row_key[0]",
        "countable values",
    ),
    (
        "a nullable row key: a row without a value is no row of the key's",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "year").update(nullable=True),
        "row_key[0]",
        "nullable",
    ),
    (
        "a key set of the wrong type: 2020 and '2020' differ, and the row key counts keys",
        "datasets/enterprise_tax.yaml",
        lambda d: _field(d, "year").update(key_set=["2020", "2021"]),
        "fields[1].key_set",
        "every key of an integer field must be an integer",
    ),
    (
        "a row key field listed twice",
        "datasets/utilities.yaml",
        lambda d: d.update(row_key=["year", "year"]),
        "row_key",
        "listed twice",
    ),
    (
        "a contract's δ too large for the threshold to mean anything",
        "disclosure.yaml",
        lambda d: d.update(delta_total=0.01),
        "delta_total",
        "less than or equal to 0.001",
    ),
    (
        "no δ at all: every threshold would be infinite",
        "disclosure.yaml",
        lambda d: d.update(delta_total=0),
        "delta_total",
        "greater than 0",
    ),
    (
        "per-query epsilon above total",
        "disclosure.yaml",
        lambda d: d.update(epsilon_per_query_max=99),
        "epsilon_per_query_max",
        "exceeds",
    ),
]


@pytest.mark.parametrize(
    ("relative", "mutate", "key", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_policy_is_refused_naming_file_and_key(
    tmp_path: Path, relative: str, mutate: Mutation, key: str, fragment: str
) -> None:
    root = _mutate(tmp_path, relative, mutate)
    with pytest.raises(PolicyError) as caught:
        load_catalog(root)
    problems = caught.value.problems
    matching = [p for p in problems if p.file == f"policies/{relative}" and p.key.endswith(key)]
    assert matching, f"expected {relative}: {key}, got {[str(p) for p in problems]}"
    assert any(fragment in p.message for p in matching), [str(p) for p in matching]
    assert f"policies/{relative}: " in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    root = _mutate(tmp_path, "datasets/enterprises.yaml", lambda d: d.update(owner="x"))
    _mutate(
        tmp_path, "datasets/public_credit.yaml", lambda d: _field(d, "rating").update(uses=["filter", "x"])
    )
    _mutate(tmp_path, "templates.yaml", lambda d: d["templates"][0].update(dataset="taxes"))
    with pytest.raises(PolicyError) as caught:
        load_catalog(root)
    files = {p.file for p in caught.value.problems}
    assert files == {
        "policies/datasets/enterprises.yaml",
        "policies/datasets/public_credit.yaml",
        "policies/templates.yaml",
    }
    # Templates over a dataset whose file is broken are not also called "missing".
    assert not any(
        "enterprise_active" in str(p) or "'enterprises'" in p.message for p in caught.value.problems
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / "disclosure.yaml").write_text("min_cell_size: [10\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"policies/disclosure.yaml: line \d+: not valid YAML"):
        load_catalog(copy)


def test_yaml_nested_too_deeply_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / "disclosure.yaml").write_text("[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"policies/disclosure.yaml: \(yaml\): nested too deeply"):
        load_catalog(copy)


def test_empty_policy_is_an_error_not_allow_all(tmp_path: Path) -> None:
    (tmp_path / "policies" / "datasets").mkdir(parents=True)
    with pytest.raises(PolicyError, match="empty policy is an error"):
        load_catalog(tmp_path / "policies")


def test_unknown_policy_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / "grants.yaml").write_text("allow: all\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"policies/grants.yaml: \(file\): unknown policy file"):
        load_catalog(copy)


def test_a_policy_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    from catalog.loader import MAX_POLICY_FILE_BYTES

    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    padding = "# " + "x" * 1000 + "\n"
    text = (copy / "templates.yaml").read_text(encoding="utf-8")
    (copy / "templates.yaml").write_text(
        text + padding * (MAX_POLICY_FILE_BYTES // len(padding) + 1), encoding="utf-8"
    )
    with pytest.raises(PolicyError) as caught:
        load_catalog(copy)
    problems = [str(p) for p in caught.value.problems]
    assert problems == [
        f"policies/templates.yaml: (file): {(copy / 'templates.yaml').stat().st_size:,} bytes, "
        "over the 256 KiB a policy file may have"
    ]


def test_a_policy_file_just_under_the_cap_loads(tmp_path: Path) -> None:
    from catalog.loader import MAX_POLICY_FILE_BYTES

    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    path = copy / "templates.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "#" * (MAX_POLICY_FILE_BYTES - len(text.encode()) - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_POLICY_FILE_BYTES
    assert load_catalog(copy).templates.keys() == load_catalog(POLICIES).templates.keys()


def test_unreadable_yaml_is_one_problem_not_two(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / "disclosure.yaml").write_text("min_cell_size: [10\n", encoding="utf-8")
    (copy / "datasets" / "utilities.yaml").unlink()
    (copy / "datasets" / "utilities.yaml").symlink_to(tmp_path / "nowhere.yaml")
    with pytest.raises(PolicyError) as caught:
        load_catalog(copy)
    by_file = {p.file: [] for p in caught.value.problems}
    for p in caught.value.problems:
        by_file[p.file].append(p.message)
    assert len(by_file["policies/disclosure.yaml"]) == 1
    assert by_file["policies/datasets/utilities.yaml"] == ["cannot be read: No such file or directory"]
