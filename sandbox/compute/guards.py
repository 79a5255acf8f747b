"""The names a program runs with: RestrictedPython's hooks, the safe builtins, read-only data.

What a program can reach is only what this module hands it: built-in values (numbers, strings,
tuples, lists, dicts, sets, read-only mappings), the functions of ``stats`` and ``math``, the
builtins below, and exceptions. Attribute access is allowed by exact type and name from the
table ``ATTRIBUTES`` (so ``str.format``, ``AttributeError.obj``, a function's globals or a type's
subclasses are unreachable, whatever the compile step missed); iteration only of the built-in
iterables; writes only into the program's own lists and dicts; items are read as Python reads
them (see ``guarded_getitem`` for why that is safe here).

``sorted``, ``zip``, ``tuple``... iterate in C without asking ``_getiter_``. RestrictedPython
leaves them out because Zope's ``_getiter_`` guards secrets behind iteration; here nothing
iterable holds anything but the data the program was given, so they are safe and offered.

Confidentiality does not rest on this module alone: the process around it (runner.py) has no
files, network or children, and only a checked number or small mapping leaves it.

Standard library and RestrictedPython only: imported by the child.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Iterable, Mapping
from types import GeneratorType, MappingProxyType
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from sandbox.compute.stats import MATH_NAMES, STATS_NAMES, MathHelpers, StatsHelpers

_STR_METHODS = frozenset(
    {
        "lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit",
        "join", "replace", "find", "count", "isdigit", "isalpha", "isalnum", "isspace", "title",
    }
)  # fmt: skip
_LIST_METHODS = frozenset(
    {"append", "extend", "insert", "pop", "remove", "index", "count", "sort", "reverse", "copy", "clear"}
)
_DICT_METHODS = frozenset({"get", "keys", "values", "items", "pop", "setdefault", "update", "copy", "clear"})
_SET_METHODS = frozenset(
    {
        "add", "discard", "remove", "pop", "update", "union", "intersection", "difference",
        "issubset", "issuperset", "copy", "clear",
    }
)  # fmt: skip

# Exact type → attribute names a program may read. Anything else is an AttributeError. A plain
# dict (not a MappingProxyType) because the lookup is on the hot path; nothing hands it out.
_ATTRIBUTES: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    list: _LIST_METHODS,
    tuple: frozenset({"index", "count"}),
    dict: _DICT_METHODS,
    MappingProxyType: frozenset({"get", "keys", "values", "items"}),
    set: _SET_METHODS,
    frozenset: frozenset({"union", "intersection", "difference", "issubset", "issuperset"}),
    float: frozenset({"is_integer"}),
    StatsHelpers: STATS_NAMES,
    MathHelpers: MATH_NAMES,
}
ATTRIBUTES: Mapping[type, frozenset[str]] = MappingProxyType(_ATTRIBUTES)
_NOTHING: frozenset[str] = frozenset()
ATTRIBUTE_NAMES = frozenset().union(*ATTRIBUTES.values())

_WRITE_TYPES = frozenset({list, dict})
_EMPTY_ITERABLES: tuple[Iterable[object], ...] = ((), [], {}, "", range(0), set(), frozenset())
_DICT_VIEWS: tuple[Iterable[object], ...] = ({}.keys(), {}.values(), {}.items())
_ITER_TYPES = frozenset(
    {tuple, list, dict, str, MappingProxyType, range, set, frozenset, GeneratorType}
    | {enumerate, zip, map, filter, reversed}
    | {type(iter(empty)) for empty in _EMPTY_ITERABLES}
    | {type(view) for view in _DICT_VIEWS}
    | {type(iter(view)) for view in _DICT_VIEWS}
)

_EXCEPTIONS = (
    "ArithmeticError", "Exception", "IndexError", "KeyError", "LookupError", "OverflowError",
    "TypeError", "ValueError", "ZeroDivisionError",
)  # fmt: skip
_FUNCTIONS = (
    "abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float",
    "frozenset", "int", "isinstance", "len", "list", "map", "max", "min", "ord", "range",
    "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip",
)  # fmt: skip
# Not offered, among others: type, object, getattr/setattr/hasattr, vars, dir, globals, locals,
# open, compile, eval, exec, __import__, __build_class__, memoryview, bytes, iter/next, repr,
# format, id, hash, print (print is rewritten by RestrictedPython into the discarding _print_).
SAFE_BUILTINS: Mapping[str, Any] = MappingProxyType(
    {name: getattr(builtins, name) for name in _FUNCTIONS + _EXCEPTIONS}
)
SAFE_BUILTIN_NAMES = frozenset(SAFE_BUILTINS) | {"None", "True", "False"}

# Error classes a failed run may report: the built-in exceptions, by name. A program cannot
# define its own (no class statements), but the child checks against this set all the same.
REPORTABLE_ERRORS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


def guarded_getattr(obj: Any, name: str) -> Any:
    """``obj.name`` only for the exact types and names in ``ATTRIBUTES``.

    ``name`` is always a string constant from the program's AST (the program cannot call
    ``_getattr_`` itself, nor make a ``str`` subclass), so it is not checked again here.
    """
    if name in _ATTRIBUTES.get(type(obj), _NOTHING):
        return getattr(obj, name)
    raise AttributeError("attribute not available in the sandbox")


# Reading items is not restricted (RestrictedPython's own default_guarded_getitem is ``ob[index]``
# too): of everything a program can reach, only containers of its own data answer ``[]`` at all,
# types answer with a GenericAlias (whose attributes the attribute guard refuses), the rest raise.
# The C operator.getitem costs ~20 ns a subscript where a Python type check costs ~120 ns, and
# ``row["field"]`` is the hot path of every program (bench/compute.py).
guarded_getitem = operator.getitem


def guarded_getiter(obj: Any) -> Any:
    """``iter(obj)`` on the built-in iterables only."""
    if type(obj) in _ITER_TYPES:
        return iter(obj)
    raise TypeError("object is not iterable in the sandbox")


def guarded_write(obj: Any) -> Any:
    """Item and attribute stores go only into the program's own lists and dicts."""
    if type(obj) in _WRITE_TYPES:
        return obj
    raise TypeError("object is read-only in the sandbox")


_INPLACE: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType(
    {
        "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
        "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
        "<<=": operator.ilshift, ">>=": operator.irshift, "|=": operator.ior,
        "^=": operator.ixor, "&=": operator.iand,
    }
)  # fmt: skip


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    """``target op= value``; the policy keeps plain-name ``+=`` native, so this is a fallback."""
    return _INPLACE[op](target, value)


class DiscardingPrinter:
    """``_print_``: the program may print; the text is dropped, so it can never leave."""

    __slots__ = ()

    def __init__(self, _getattr_: object = None) -> None:
        del _getattr_

    def _call_print(self, *objects: object, **options: object) -> None:
        """Accept ``print(...)`` and forget it without even formatting it."""
        del objects, options

    def __call__(self) -> str:
        """``printed`` is always empty."""
        return ""


def freeze(value: Any) -> Any:
    """JSON-decoded data made read-only: dicts → MappingProxyType, lists → tuples."""
    kind = type(value)
    if kind is dict:
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if kind is list:
        return tuple(freeze(item) for item in value)
    if kind in (str, int, float, bool) or value is None:
        return value
    raise TypeError(f"unsupported value type {kind.__name__}")


def namespace(rows: Iterable[Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The globals a program runs with: the hooks, safe builtins, ``data``, ``params``, helpers."""
    return {
        "__builtins__": dict(SAFE_BUILTINS),
        "__name__": "program",
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": guarded_inplacevar,
        "_print_": DiscardingPrinter,
        "data": tuple(freeze(row) for row in rows),
        "params": freeze(dict(params)),
        "stats": StatsHelpers(),
        "math": MathHelpers(),
    }
