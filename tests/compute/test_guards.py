"""The run-time guards, checked in this process (no child): the second line behind the compile step."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from sandbox.compute import guards
from sandbox.compute.guards import (
    SAFE_BUILTINS,
    freeze,
    guarded_getattr,
    guarded_getiter,
    guarded_write,
    namespace,
)
from sandbox.compute.policy import compile_restricted
from sandbox.compute.stats import MathHelpers, StatsHelpers


def _run(source: str, rows: list[dict[str, Any]] | None = None, params: dict[str, Any] | None = None) -> Any:
    code, problems = compile_restricted(source, guards.SAFE_BUILTIN_NAMES, guards.ATTRIBUTE_NAMES)
    assert code is not None, problems
    names = namespace(rows or [], params or {})
    exec(code, names)
    return names.get("result")


ESCAPES_THE_COMPILER_WOULD_STOP = [
    ("", "format"),
    ("", "format_map"),
    (AttributeError("x"), "obj"),
    (AttributeError("x"), "args"),
    (StatsHelpers.mean, "__globals__"),
    (StatsHelpers(), "__class__"),
    ((), "__class__"),
    (int, "mro"),
    (str, "join"),
    ((x for x in ()), "gi_frame"),
    ((x for x in ()), "send"),
    (MappingProxyType({}), "copy"),
    (list[int], "append"),
]


@pytest.mark.parametrize(("obj", "name"), ESCAPES_THE_COMPILER_WOULD_STOP, ids=lambda v: str(v)[:20])
def test_attribute_guard_refuses_what_its_table_does_not_list(obj: object, name: str) -> None:
    with pytest.raises(AttributeError):
        guarded_getattr(obj, name)


def test_attribute_guard_allows_listed_methods_by_exact_type() -> None:
    assert guarded_getattr("a,b", "split")(",") == ["a", "b"]
    assert guarded_getattr(StatsHelpers(), "mean")([1, 3]) == 2
    assert guarded_getattr(MathHelpers(), "pi") > 3


def test_writes_go_only_into_the_programs_own_lists_and_dicts() -> None:
    assert guarded_write([]) == []
    for read_only in ((), MappingProxyType({}), "s", StatsHelpers(), StatsHelpers.mean, 1.0, frozenset()):
        with pytest.raises(TypeError):
            guarded_write(read_only)


def test_iteration_only_of_built_in_iterables() -> None:
    assert list(guarded_getiter(MappingProxyType({"a": 1}))) == ["a"]
    for not_iterable in (StatsHelpers(), StatsHelpers.mean, ValueError()):
        with pytest.raises(TypeError):
            guarded_getiter(not_iterable)


def test_dangerous_builtins_are_not_offered() -> None:
    for name in ("type", "object", "getattr", "setattr", "vars", "dir", "globals", "locals", "open",
                 "compile", "eval", "exec", "__import__", "__build_class__", "memoryview", "bytes",
                 "iter", "next", "repr", "format", "id", "hash", "breakpoint", "input", "help",
                 "SystemExit", "BaseException", "KeyboardInterrupt", "GeneratorExit"):  # fmt: skip
        assert name not in SAFE_BUILTINS


def test_data_and_params_are_read_only() -> None:
    rows = [{"x": 1, "tags": ["a"]}]
    for source in (
        "data[0]['x'] = 2",
        "data[0]['tags'][0] = 'b'",
        "params['k'] = 1",
        "stats.mean = 1",
        "d = data\nd.append(1)",
        "r = data[0]\nr.update({'x': 2})",
    ):
        with pytest.raises((TypeError, AttributeError)):
            _run(source, rows, {"k": 0})
    assert rows == [{"x": 1, "tags": ["a"]}]


def test_freeze_makes_json_read_only_and_refuses_other_types() -> None:
    frozen = freeze({"a": [1, {"b": None}]})
    assert isinstance(frozen, MappingProxyType) and frozen["a"] == (1, MappingProxyType({"b": None}))
    with pytest.raises(TypeError):
        freeze({"a": object()})


def test_print_is_accepted_and_discarded() -> None:
    assert _run("print('secret-456', 1)\nresult = len(printed)") == 0


def test_a_scoring_program_runs_under_the_guards() -> None:
    source = (
        "total = 0\ncounts = {}\nfor r in data:\n    total += r['v']\n"
        "    counts[r['k']] = counts.get(r['k'], 0) + 1\n"
        "a, (b, c) = 1, (2, 3)\nfor i, r in enumerate(data):\n    total += i\n"
        "result = {'total': total, 'keys': len(counts), 'abc': a + b + c, 'ok': sorted(counts) == ['x', 'y']}"
    )
    rows = [{"v": 1, "k": "x"}, {"v": 2, "k": "y"}, {"v": 3, "k": "x"}]
    assert _run(source, rows) == {"total": 9, "keys": 2, "abc": 6, "ok": True}
