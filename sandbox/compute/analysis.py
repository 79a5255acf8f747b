"""What a reviewer is shown about a program before approving it.

A static reading of the source, not a proof: fields read (constant keys on records), parameters
read, names called, loops, and whether the output could carry rows. The last is a taint pass that
errs on the side of "yes": a name holds rows if it is bound from ``data``, from something that
holds rows, or a container rows were appended to; ``result`` could carry rows if anything bound
to it or stored in it does. The run-time shape check refuses rows whatever this says; the point
here is to show the reviewer where to look.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from typing import Any

_REDUCERS = frozenset(
    {
        "len", "sum", "abs", "round", "int", "float", "bool", "any", "all", "divmod",
        "stats.count", "stats.sum", "stats.mean", "stats.median", "stats.quantile",
        "stats.variance", "stats.stdev", ".count", ".index", ".find", ".startswith", ".endswith",
        ".is_integer", ".issubset", ".issuperset", "isinstance", "str", "ord", "chr",
    }
)  # fmt: skip
_FIELD_CALLS = frozenset({"stats.column", "stats.group_by"})
_ADDERS = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})


@dataclass(frozen=True)
class Loop:
    """A loop of the program: ``for``, ``while`` or a comprehension, with its line."""

    kind: str
    line: int


@dataclass(frozen=True)
class ProgramAnalysis:
    """The reviewer's view of a program (see the module docstring for what each part means)."""

    fields_read: tuple[str, ...]
    params_read: tuple[str, ...]
    names_called: tuple[str, ...]
    loops: tuple[Loop, ...]
    functions_defined: tuple[str, ...]
    prints: bool
    output_may_carry_rows: bool
    output_notes: tuple[str, ...]
    output_keys: str
    output_bounds: Any

    def to_dict(self) -> dict[str, Any]:
        """The analysis as JSON, as the API attaches it to a program."""
        return {
            "fields_read": list(self.fields_read),
            "params_read": list(self.params_read),
            "names_called": list(self.names_called),
            "loops": [{"kind": loop.kind, "line": loop.line} for loop in self.loops],
            "functions_defined": list(self.functions_defined),
            "prints": self.prints,
            "output_may_carry_rows": self.output_may_carry_rows,
            "output_notes": list(self.output_notes),
            "output_keys": self.output_keys,
            "output_bounds": self.output_bounds,
        }


def call_name(func: ast.expr) -> str:
    """``len``, ``stats.mean`` or ``.append``: how a call is named in the analysis."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id in ("stats", "math"):
            return f"{func.value.id}.{func.attr}"
        return f".{func.attr}"
    return "<expression>"


def _constant_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Subscript | ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _reads(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Constant keys read on records (fields) and on ``params``."""
    fields: set[str] = set()
    params: set[str] = set()

    def note(owner: ast.expr, key: str | None) -> None:
        if key is not None:
            (params if _base_name(owner) == "params" else fields).add(key)

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            note(node.value, _constant_str(node.slice))
        elif isinstance(node, ast.Call) and node.args:
            name = call_name(node.func)
            if name == ".get" and isinstance(node.func, ast.Attribute):
                note(node.func.value, _constant_str(node.args[0]))
            elif name in _FIELD_CALLS and len(node.args) > 1:
                fields.update(filter(None, [_constant_str(node.args[1])]))
    return fields, params


# Taint levels: nothing from rows, one record, rows (or anything that might hold several).
_NONE, _RECORD, _ROWS = 0, 1, 2


# Work the taint pass may do (calls of ``_RowTaint.level``, about 1 µs each) before it gives up
# and takes the output as possibly carrying rows: a program is analysed at submission, approval,
# queueing and start, and 3,900 chained assignments had taken 158 s to analyse by passes.
MAX_TAINT_VISITS = 2_000_000
TOO_COMPLEX = "the program is too large to follow: take its output as possibly carrying rows"
_STEPS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr, ast.For, ast.comprehension, ast.Call)


class _TooComplex(Exception):
    pass


class _RowTaint:
    """Which names may hold a record or rows; grown to a fixpoint over the program's bindings."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.levels: dict[str, int] = {"data": _ROWS}
        self.visits_left = MAX_TAINT_VISITS

    def level(self, node: ast.AST | None) -> int:
        """What evaluating ``node`` could give: nothing from rows, a record, or rows.

        ``_TooComplex`` once the pass has spent its visits."""
        self.visits_left -= 1
        if self.visits_left < 0:
            raise _TooComplex
        if node is None or isinstance(node, ast.Constant | ast.Lambda | ast.Compare):
            return _NONE
        if isinstance(node, ast.Name):
            return self.levels.get(node.id, _NONE)
        if isinstance(node, ast.Subscript):
            # A key on one record is a field value; any key on rows may be a record or a group.
            owner = self.level(node.value)
            return _NONE if owner == _RECORD else owner
        if isinstance(node, ast.Call):
            if call_name(node.func) in _REDUCERS:
                return _NONE
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
            parts = [receiver, *node.args, *(keyword.value for keyword in node.keywords)]
            return max(self.level(part) for part in parts)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            return _ROWS if self.level(node.elt) else _NONE
        if isinstance(node, ast.DictComp):
            # A key is text: str(row["ssn"]) reduces nothing there, so a key that reads rows is rows.
            if self.mentions(node.key):
                return _ROWS
            return _ROWS if max(self.level(node.key), self.level(node.value)) else _NONE
        if isinstance(node, ast.Dict) and any(k is not None and self.mentions(k) for k in node.keys):
            return _ROWS
        if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            return _ROWS if max(map(self.level, ast.iter_child_nodes(node)), default=0) else _NONE
        return max(map(self.level, ast.iter_child_nodes(node)), default=_NONE)

    def mentions(self, node: ast.AST) -> bool:
        """Whether ``node`` reads a name holding a record or rows (a field of one, say)."""
        for found in ast.walk(node):
            self.visits_left -= 1
            if self.visits_left < 0:
                raise _TooComplex
            if isinstance(found, ast.Name) and self.levels.get(found.id, _NONE):
                return True
        return False

    def _bind(self, target: ast.AST, level: int) -> list[str]:
        raised = []
        for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
            if level > self.levels.get(name, _NONE):
                self.levels[name] = level
                raised.append(name)
        return raised

    def _step(self, node: ast.AST) -> list[str]:
        """Apply one binding; the names whose level it raised."""
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            level = self.level(node.value)
            raised = [name for target in targets for name in self._bind(target, level)]
            for target in targets:  # d[str(row["ssn"])] = 1: d's keys are rows' values
                if not isinstance(target, ast.Subscript) or (base := _base_name(target)) is None:
                    continue
                if self.mentions(target.slice):
                    raised += self._bind(ast.Name(id=base), _ROWS)
            return raised
        if isinstance(node, ast.NamedExpr):
            return self._bind(node.target, self.level(node.value))
        if isinstance(node, ast.For | ast.comprehension):
            # Iterating rows gives records; unpacking them (enumerate, items) is taken as rows.
            level = self.level(node.iter)
            if level == _ROWS and isinstance(node.target, ast.Name):
                level = _RECORD
            return self._bind(node.target, level)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr not in _ADDERS:
                return []
            # What is added is kept whole, a key (setdefault, add) as much as a value.
            added = any(self.level(arg) or self.mentions(arg) for arg in node.args)
            return self._bind(node.func.value, _ROWS if added else _NONE)
        return []

    def solve(self) -> None:
        """Raise levels until no binding changes one; ``_TooComplex`` past the visits allowed.

        A worklist: a binding is applied again only when a name it reads was raised (a binding's
        level depends on the names inside it alone), so a chain of assignments in any order costs
        about its length, where passes over the whole program until none changed cost its square.
        """
        steps = [node for node in ast.walk(self.tree) if isinstance(node, _STEPS)]
        readers: dict[str, list[int]] = {}
        for index, step in enumerate(steps):
            for name in {n.id for n in ast.walk(step) if isinstance(n, ast.Name)}:
                readers.setdefault(name, []).append(index)
        pending = deque(range(len(steps)))
        queued = [True] * len(steps)
        while pending:
            index = pending.popleft()
            queued[index] = False
            for name in self._step(steps[index]):
                for reader in readers.get(name, ()):
                    if not queued[reader]:
                        queued[reader] = True
                        pending.append(reader)


def _result_stores(tree: ast.Module) -> list[tuple[int, ast.expr, ast.expr]]:
    """(line, target, value) of every binding of ``result`` or of an item in it."""
    stores: list[tuple[int, ast.expr, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            stores.extend((node.lineno, t, node.value) for t in targets if _base_name(t) == "result")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and _base_name(node.func.value) == "result"
            and node.func.attr in _ADDERS
        ):
            stores.extend((node.lineno, node.func, arg) for arg in node.args)
    return stores


def _keys_mention_rows(value: ast.expr, taint: _RowTaint) -> bool:
    """Whether a mapping built in ``value``, at any depth, takes a key from rows: a key is text,
    so ``str(row["ssn"])`` releases the value though ``str`` reduces it (found by a sweep)."""
    for node in ast.walk(value):
        if isinstance(node, ast.Dict) and any(k is not None and taint.mentions(k) for k in node.keys):
            return True
        if isinstance(node, ast.DictComp) and taint.mentions(node.key):
            return True
    return False


def _output(tree: ast.Module) -> tuple[bool, list[str], str]:
    try:
        return _follow(tree, _RowTaint(tree))
    except _TooComplex:
        return True, [TOO_COMPLEX], "dynamic"


def _follow(tree: ast.Module, taint: _RowTaint) -> tuple[bool, list[str], str]:
    taint.solve()
    notes: list[str] = []
    keys = "number"
    carries = False
    stores = _result_stores(tree)
    for line, target, value in stores:
        keyed_by_rows = isinstance(target, ast.Subscript) and taint.mentions(target.slice)
        if keyed_by_rows or _keys_mention_rows(value, taint):
            carries = True
            notes.append(f"line {line}: result's keys may be values taken from rows")
        if taint.level(value.value if isinstance(value, ast.DictComp) else value):
            carries = True
            notes.append(f"line {line}: result may be given a record or rows")
        if isinstance(value, ast.List | ast.Tuple | ast.Set | ast.ListComp | ast.SetComp):
            notes.append(f"line {line}: result is given a sequence, which is never released")
        if isinstance(value, ast.DictComp) or (
            isinstance(value, ast.Dict) and any(_constant_str(k) is None for k in value.keys)
        ):
            keys = "dynamic"
        elif isinstance(value, ast.Dict) and keys == "number":
            keys = "static"
        if isinstance(target, ast.Subscript) and _constant_str(target.slice) is None:
            keys = "dynamic"
        elif isinstance(target, ast.Subscript | ast.Attribute) and keys == "number":
            keys = "static"
    if not stores:
        notes.append("result is never assigned: every run will fail")
    return carries, notes, keys


def analyse(tree: ast.Module, output_bounds: Any) -> ProgramAnalysis:
    """The analysis of a parsed (not yet restricted) program."""
    fields, params = _reads(tree)
    calls = sorted({call_name(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)})
    loops = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.While):
            loops.append(Loop("for" if isinstance(node, ast.For) else "while", node.lineno))
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            loops.append(Loop("comprehension", node.lineno))
    carries, notes, keys = _output(tree)
    return ProgramAnalysis(
        fields_read=tuple(sorted(fields)),
        params_read=tuple(sorted(params)),
        names_called=tuple(calls),
        loops=tuple(sorted(loops, key=lambda loop: (loop.line, loop.kind))),
        functions_defined=tuple(sorted({n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)})),
        prints="print" in calls,
        output_may_carry_rows=carries,
        output_notes=tuple(notes),
        output_keys=keys,
        output_bounds=output_bounds,
    )
