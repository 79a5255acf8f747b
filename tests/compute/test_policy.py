"""The compile-time policy: each refused construct, with its line; what a scoring program may use."""

from __future__ import annotations

import pytest

from sandbox.compute.compile import compile_program, source_sha256
from sandbox.compute.errors import ProgramInvalid
from sandbox.compute.policy import MAX_SOURCE_BYTES


def _problems(source: str) -> list[tuple[int | None, str]]:
    with pytest.raises(ProgramInvalid) as refused:
        compile_program(source)
    assert refused.value.status == 422 and refused.value.code == "invalid"
    return [(p["line"], p["message"]) for p in refused.value.details]


REFUSED = {
    "import": ("result = 1\nimport os\n", 2, "Imports are not allowed"),
    "from_import": ("from math import sqrt\nresult = 1\n", 1, "Imports are not allowed"),
    "yield": ("def g():\n    yield 1\nresult = 1\n", 2, "Generators (yield)"),
    "yield_from": ("def g():\n    yield from [1]\nresult = 1\n", 2, "Generators (yield from)"),
    "global": ("def f():\n    global result\n    result = 1\nf()\n", 2, "global statements"),
    "nonlocal": ("def f():\n    x = 1\n    def g():\n        nonlocal x\nresult = 1\n", 4, "Nonlocal"),
    "class": ("class A:\n    pass\nresult = 1\n", 1, "Class definitions"),
    "async": ("async def f():\n    return 1\nresult = 1\n", 1, "AsyncFunctionDef"),
    "await_lambda": ("result = 1\nasync def f():\n    await g()\n", 2, "AsyncFunctionDef"),
    "with": ("with x as y:\n    pass\nresult = 1\n", 1, "with statements"),
    "decorator": ("def d(f):\n    return f\n@d\ndef g():\n    return 1\nresult = 1\n", 4, "Decorators"),
    "posonly": ("def f(a, /):\n    return a\nresult = f(1)\n", 1, "Positional-only parameters"),
    "star_args": ("def f(*a):\n    return 1\nresult = f(*[1])\n", 3, "Argument unpacking"),
    "kwargs": ("result = dict(**{'a': 1})\n", 1, "Argument unpacking"),
    "format_spec": ("result = len(f'{1:>{10**10}}')\n", 1, "Format specs in f-strings"),
    "repr_conversion": ("result = len(f'{data!r}')\n", 1, "Conversions other than !s"),
    "underscore_name": ("_x = 1\nresult = 1\n", 1, 'starts with "_"'),
    "dunder_attribute": ("result = ().__class__\n", 1, 'starts with "_"'),
    "frame_attribute": ("g = (x for x in [1])\nresult = g.gi_frame\n", 2, '"gi_frame" is a restricted name'),
    "unknown_attribute": ("result = 'a'.format(1)\n", 1, 'Attribute "format" is not available'),
    "unknown_name": ("result = np.mean(data)\n", 1, 'Name "np" is not defined'),
    "eval": ("result = eval('1')\n", 1, "Eval calls are not allowed"),
    "exec": ("exec('x = 1')\nresult = 1\n", 1, "Exec calls are not allowed"),
    "open": ("result = open('/etc/passwd').read()\n", 1, 'Name "open" is not defined'),
    "type": ("result = type(1)\n", 1, 'Name "type" is not defined'),
    "getattr": ("result = getattr(1, 'real')\n", 1, 'Name "getattr" is not defined'),
    "system_exit": ("raise SystemExit\n", 1, 'Name "SystemExit" is not defined'),
    "base_exception": ("try:\n    x = 1\nexcept BaseException:\n    pass\n", 3, 'Name "BaseException"'),
    "match": ("match 1:\n    case 1:\n        pass\nresult = 1\n", 1, "Match statements are not allowed"),
    "try_star": ("try:\n    pass\nexcept* ValueError:\n    pass\nresult = 1\n", 1, "TryStar"),
    "augassign_item": ("d = {}\nd['a'] += 1\nresult = 1\n", 2, "Augmented assignment of object items"),
    "syntax_error": ("result = (1\n", 1, "SyntaxError"),
    "return_outside_function": ("return 1\n", 1, "SyntaxError: 'return' outside function"),
    "invalid_escape": ("x = '\\d'\nresult = 1\n", 1, "invalid escape sequence"),
    "bounds_twice": ("OUTPUT_BOUNDS = [0, 1]\nOUTPUT_BOUNDS = [0, 2]\nresult = 1\n", 2, "assigned once"),
    "bounds_computed": ("OUTPUT_BOUNDS = [0, 10 ** 2]\nresult = 1\n", 1, "must be a literal"),
    "bounds_inverted": ("OUTPUT_BOUNDS = [5, 1]\nresult = 1\n", 1, "finite low < high"),
    "bounds_in_function": ("def f():\n    OUTPUT_BOUNDS = [0, 1]\nresult = 1\n", 2, "at the top level"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_construct_is_refused_with_its_line(case: tuple[str, int, str]) -> None:
    source, line, message = case
    problems = _problems(source)
    assert any(found_line == line and message in text for found_line, text in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    problems = _problems("import os\nclass A:\n    pass\nresult = np.x\n")
    assert {line for line, _ in problems} == {1, 2, 4}


def test_oversized_and_nul_sources_are_refused_before_parsing() -> None:
    assert "larger than" in _problems("#" * (MAX_SOURCE_BYTES + 1))[0][1]
    assert "NUL" in _problems("result = 1\x00")[0][1]
    assert "lone surrogate" in _problems("result = '\ud800'")[0][1]


def test_deeply_nested_source_is_refused_not_crashed() -> None:
    problems = _problems("result = " + "(" * 300 + "1" + ")" * 300 + "\n")
    assert problems and problems[0][1]


ACCEPTED = """
OUTPUT_BOUNDS = {"mean": [0, 1e6], "by_band": {"low": [0, 1], "high": [0, 1]}}

def band(value, cut=params["cut"]):
    return "high" if value >= cut else "low"

incomes = stats.column(data, "income")
counts = {"low": 0, "high": 0}
for r in data:
    b = band(r["income"])
    counts[b] = counts[b] + 1
total = 0
i = 0
while i < 3:
    total += i
    i += 1
pairs = [(k, v) for k, v in counts.items()]
for k, v in pairs:
    total += v
try:
    ratio = counts["high"] / len(data)
except ZeroDivisionError:
    ratio = 0.0
if (n := len(incomes)) > 0:
    total += n
print("debugging", total)
label = f"band {total}"
a, *rest = [1, 2, 3]
ordered = sorted(incomes, key=lambda x: -x)
result = {
    "mean": stats.mean(incomes),
    "by_band": {"low": counts["low"] / len(data), "high": ratio},
}
"""


def test_a_realistic_program_is_accepted_with_its_hash() -> None:
    program = compile_program(ACCEPTED)
    assert program.sha256 == source_sha256(ACCEPTED)
    assert program.output_bounds == {"mean": (0.0, 1e6), "by_band": {"low": (0.0, 1.0), "high": (0.0, 1.0)}}


def test_a_changed_source_is_a_new_hash() -> None:
    assert compile_program("result = 1\n").sha256 != compile_program("result = 2\n").sha256


@pytest.mark.parametrize(
    "source",
    [
        "result = " + "+".join(["1"] * 30000),
        "result = " + "-" * 60000 + "1",
        "result = " + "not " * 15000 + "1",
    ],
    ids=["long_sum", "unary_chain", "not_chain"],
)
def test_pathologically_long_expressions_are_refused_not_crashed(source: str) -> None:
    assert "nested too deeply" in _problems(source + "\n")[0][1]
