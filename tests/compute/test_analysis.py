"""The reviewer's analysis: fields, parameters, calls, loops, and whether the output could carry rows."""

from __future__ import annotations

import pytest

from sandbox.compute import analysis as analysis_module
from sandbox.compute.compile import compile_program

SCORING = """
OUTPUT_BOUNDS = {"score": [300, 900]}
taxes = stats.column(data, "annual_tax")
paid = [r["paid_months"] for r in data if r.get("district") == params["district"]]
total = 0
for r in data:
    total += r["kwh"]
i = 0
while i < params["rounds"]:
    i += 1
result = {"score": min(900, 300 + stats.mean(taxes) / 1000 + len(paid))}
"""


def test_analysis_lists_fields_params_calls_loops_and_bounds() -> None:
    analysis = compile_program(SCORING).analysis_dict()
    assert analysis["fields_read"] == ["annual_tax", "district", "kwh", "paid_months"]
    assert analysis["params_read"] == ["district", "rounds"]
    assert analysis["names_called"] == [".get", "len", "min", "stats.column", "stats.mean"]
    assert analysis["loops"] == [
        {"kind": "comprehension", "line": 4},
        {"kind": "for", "line": 6},
        {"kind": "while", "line": 9},
    ]
    assert analysis["output_may_carry_rows"] is False
    assert analysis["output_keys"] == "static"
    assert analysis["output_bounds"] == {"score": [300.0, 900.0]}
    assert analysis["prints"] is False


CARRIES_ROWS = {
    "whole_data": "result = data\n",
    "one_row": "result = data[0]\n",
    "loop_variable": "for r in data:\n    x = r\nresult = x\n",
    "list_of_rows": "result = {'rows': list(data)}\n",
    "appended_rows": "out = []\nfor r in data:\n    out.append(r)\nresult = {'x': out}\n",
    "max_row": "result = max(data, key=lambda r: r['income'])\n",
    "group": "g = stats.group_by(data, 'district')\nresult = {'g': g['历下区']}\n",
    "column": "result = {'incomes': stats.column(data, 'income')}\n",
    "item_store": "result = {}\nfor r in data:\n    result['last'] = r\n",
    "through_function": "def f(x):\n    return x\nresult = f(data)\n",
    # Found by a sweep: str() reduces a value as len() does, but as a key it is the value.
    "str_key": "result = {str(data[-1]['ssn']): 1}\n",
    "nested_str_key": "result = {'a': {str(data[0]['ssn']): 1}}\n",
    "updated_str_key": "x = data[0]\nresult = {}\nresult.update({str(x['ssn']): 1})\n",
    # Review: the same keys built in a named mapping first, by a comprehension, a store or setdefault.
    "named_str_keys": "d = {str(r['ssn']): 1 for r in data}\nresult = {'a': d}\n",
    "stored_str_keys": "d = {}\nfor r in data:\n    d[str(r['ssn'])] = 1\nresult = {'a': d}\n",
    "setdefault_str_keys": "d = {}\nfor r in data:\n    d.setdefault(str(r['ssn']), 0)\nresult = d\n",
    "appended_values": "t = []\nfor r in data:\n    t.append(r['income'])\nresult = {'first': t[0]}\n",
}


@pytest.mark.parametrize("source", CARRIES_ROWS.values(), ids=CARRIES_ROWS.keys())
def test_output_that_could_carry_rows_is_flagged_with_its_line(source: str) -> None:
    analysis = compile_program(source).analysis
    assert analysis.output_may_carry_rows is True
    assert any(note.startswith("line ") for note in analysis.output_notes)


AGGREGATES = {
    "mean_of_column": "result = stats.mean(stats.column(data, 'income'))\n",
    "loop_sum": "t = 0\nfor r in data:\n    t += r['income']\nresult = t\n",
    "count_per_key": "c = {}\nfor r in data:\n    c[r['d']] = c.get(r['d'], 0) + 1\nresult = {'n': len(c)}\n",
    "max_of_values": "result = max(r['income'] for r in data)\n",
    "key_from_params": "k = params['k']\nresult = {str(k): len(data)}\n",
    "mean_of_appended": "t = []\nfor r in data:\n    t.append(r['income'])\nresult = {'m': stats.mean(t)}\n",
}


@pytest.mark.parametrize("source", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_aggregate_output_is_not_flagged(source: str) -> None:
    assert compile_program(source).analysis.output_may_carry_rows is False


def test_keys_taken_from_rows_are_flagged() -> None:
    source = "g = stats.group_by(data, 'd')\nresult = {k: len(v) for k, v in g.items()}\n"
    analysis = compile_program(source).analysis
    assert analysis.output_may_carry_rows is True
    assert analysis.output_notes == ("line 2: result's keys may be values taken from rows",)
    stored = compile_program("result = {}\nfor r in data:\n    result[r['name']] = 1\n").analysis
    assert stored.output_notes == ("line 3: result's keys may be values taken from rows",)


def test_keys_chosen_by_the_data_are_called_dynamic() -> None:
    program = compile_program("g = stats.group_by(data, 'd')\nresult = {k: len(v) for k, v in g.items()}\n")
    assert program.analysis.output_keys == "dynamic"
    assert compile_program("result = {}\nresult[params['k']] = 1\n").analysis.output_keys == "dynamic"
    assert compile_program("result = 1.5\n").analysis.output_keys == "number"


def test_a_program_that_never_sets_result_is_noted() -> None:
    analysis = compile_program("x = 1\n").analysis
    assert analysis.output_notes == ("result is never assigned: every run will fail",)
    assert compile_program("print(1)\nresult = 1\n").analysis.prints is True


def _chain(length: int, last: str) -> str:
    """``a{n} = a{n-1}`` from the last link back to ``a1 = data``: each pass over the program had
    raised one name, so passes until none changed cost its length squared."""
    links = "".join(f"a{i} = a{i - 1}\n" for i in range(length, 1, -1))
    return f"{links}a1 = data\nresult = {last}\n"


def test_a_long_chain_written_backwards_is_followed_to_its_end() -> None:
    """Found by a sweep: 3,900 such links took 158 s to analyse, at submission and at every start."""
    assert compile_program(_chain(3900, "{'k': a3900}")).analysis.output_may_carry_rows is True
    analysis = compile_program(_chain(3900, "len(a3900)")).analysis
    assert (analysis.output_may_carry_rows, analysis.output_notes) == (False, ())


def test_a_program_too_large_to_follow_is_taken_as_carrying_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis_module, "MAX_TAINT_VISITS", 50)
    analysis = compile_program(_chain(60, "len(a60)")).analysis
    assert analysis.output_may_carry_rows is True
    assert analysis.output_notes == (analysis_module.TOO_COMPLEX,)
    assert analysis.output_keys == "dynamic"
