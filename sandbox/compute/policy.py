"""The compile-time policy: RestrictedPython's transformer, narrowed to what a scoring program needs.

RestrictedPython already refuses any AST node it has no reviewed visitor for, names and attributes
starting with ``_``, frame and generator introspection attributes, ``exec``/``eval`` calls and
async code, and rewrites attribute, item and iteration access into calls of the host's guards.
On top of that this policy refuses, with the line of each:

- imports (there is nothing to import; modules are how sandboxes have been escaped);
- ``yield``/``yield from`` (generators hand out frames: CVE-2023-37271), ``global``/``nonlocal``;
- ``class`` statements (a subclass of ``str`` or ``dict`` can lie to a host check, P17/P43),
  decorators, ``with`` (no context managers exist here), positional-only parameters;
- ``*args``/``**kwargs`` in calls (RestrictedPython would route them through ``_apply_``);
- f-string format specs and ``!r``/``!a`` conversions (``f'{1:>{10**10}}'`` is a memory bomb);
- augmented assignment is kept native for plain names: ``x += y`` is exactly as safe as
  ``x = x + y``, which RestrictedPython never guards, and it keeps loops fast;
- any name read that the program never binds and the sandbox does not provide (``np``, ``os``,
  ``random``...), so a reviewer sees the mistake at submission, not at run time;
- ``OUTPUT_BOUNDS`` bound more than once or to anything but a literal.

Standard library and RestrictedPython only: the child imports this module to compile again.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from types import CodeType
from typing import Any

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

FILENAME = "<program>"
MAX_SOURCE_BYTES = 64 * 1024
MAX_AST_NODES = 20_000
# Names the sandbox binds before the program runs (see guards.namespace).
PROVIDED_NAMES = frozenset({"data", "params", "stats", "math", "result", "OUTPUT_BOUNDS", "print", "printed"})
BOUNDS_NAME = "OUTPUT_BOUNDS"


@dataclass(frozen=True)
class Problem:
    """One reason a program is refused, with its line (``None`` when it has none)."""

    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The problem as the API shows it."""
        return {"line": self.line, "message": self.message}


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictingNodeTransformer with the refusals above; collects ``Problem``s with lines."""

    def __init__(self, attributes: frozenset[str]) -> None:
        super().__init__()
        self.problems: list[Problem] = []
        # Names RestrictedPython refuses itself are not reported twice.
        self.unreported = attributes | INSPECT_ATTRIBUTES

    def error(self, node: ast.AST, info: str) -> None:
        """Record a refusal (RestrictedPython's own ones come through here too)."""
        super().error(node, info)
        self.problems.append(Problem(getattr(node, "lineno", None), info))

    def refuse(self, node: ast.AST, what: str) -> None:
        """Refuse ``node`` with a message naming the construct."""
        self.error(node, f"{what} are not allowed in compute programs.")

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        """No magic method names either: there are no classes to put them in."""
        super().check_name(node, name, allow_magic_methods=False)

    def visit_Import(self, node: ast.Import) -> Any:
        """Refuse: there is nothing to import."""
        self.refuse(node, "Imports")
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        """Refuse: there is nothing to import."""
        self.refuse(node, "Imports")
        return node

    def visit_Yield(self, node: ast.Yield) -> Any:
        """Refuse: generator objects expose frames."""
        self.refuse(node, "Generators (yield)")
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> Any:
        """Refuse: generator objects expose frames."""
        self.refuse(node, "Generators (yield from)")
        return node

    def visit_Global(self, node: ast.Global) -> Any:
        """Refuse: a function may not rebind the program's globals."""
        self.refuse(node, "global statements")
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        """Refuse: subclasses of built-in types can lie to host checks."""
        self.refuse(node, "Class definitions")
        return node

    def visit_With(self, node: ast.With) -> Any:
        """Refuse: no context manager exists in the sandbox."""
        self.refuse(node, "with statements")
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        """Plain functions only: no decorators, no positional-only parameters."""
        if node.decorator_list:
            self.refuse(node, "Decorators")
        if node.args.posonlyargs:
            self.refuse(node, "Positional-only parameters")
        return super().visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        """Plain lambdas only: no positional-only parameters."""
        if node.args.posonlyargs:
            self.refuse(node, "Positional-only parameters")
        return super().visit_Lambda(node)

    def visit_Call(self, node: ast.Call) -> Any:
        """No argument unpacking, which RestrictedPython would route through ``_apply_``."""
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            keyword.arg is None for keyword in node.keywords
        ):
            self.refuse(node, "Argument unpacking (*args, **kwargs) in calls")
        return super().visit_Call(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        """f-string fields without format specs or ``!r``/``!a`` conversions."""
        if node.format_spec is not None:
            self.refuse(node, "Format specs in f-strings")
        if node.conversion not in (-1, ord("s")):
            self.refuse(node, "Conversions other than !s in f-strings")
        return super().visit_FormattedValue(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        """Only attribute names some sandbox type offers (the guard checks the type at run time)."""
        if node.attr not in self.unreported and not node.attr.startswith("_"):
            self.error(node, f'Attribute "{node.attr}" is not available in the sandbox.')
        return super().visit_Attribute(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """``name op= value`` stays native; attribute and item targets are refused as before."""
        if isinstance(node.target, ast.Name):
            self.check_name(node.target, node.target.id)
            node.value = self.visit(node.value)
            return node
        return super().visit_AugAssign(node)


def check_size(source: str) -> list[Problem]:
    """Refuse a source too large to parse safely in the service process."""
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError:
        return [Problem(None, "The program is not valid Unicode text (lone surrogate).")]
    if size > MAX_SOURCE_BYTES:
        return [Problem(None, f"The program is larger than {MAX_SOURCE_BYTES} bytes.")]
    if "\x00" in source:
        return [Problem(None, "The program contains a NUL character.")]
    return []


def parse(source: str) -> tuple[ast.Module | None, list[Problem]]:
    """Parse ``source``; a syntax error (or warning: both are refused) becomes a problem."""
    problems = check_size(source)
    if problems:
        return None, problems
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = ast.parse(source, FILENAME, "exec")
    except SyntaxError as error:
        return None, [Problem(error.lineno, f"SyntaxError: {error.msg}")]
    except Warning as warning:
        return None, [Problem(None, f"{type(warning).__name__}: {warning}")]
    except (RecursionError, MemoryError, ValueError):
        return None, [Problem(None, "The program is nested too deeply to parse.")]
    if sum(1 for _ in ast.walk(tree)) > MAX_AST_NODES:
        return None, [Problem(None, f"The program has more than {MAX_AST_NODES} syntax nodes.")]
    return tree, []


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the program binds anywhere (assignment, loop, def, parameter, except)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def _check_free_names(tree: ast.Module, allowed: frozenset[str]) -> list[Problem]:
    known = bound_names(tree) | allowed | PROVIDED_NAMES
    problems: list[Problem] = []
    seen: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
            continue
        # Names starting with "_" are refused by RestrictedPython itself, not reported twice.
        if node.id not in known and node.id not in seen and not node.id.startswith("_"):
            seen.add(node.id)
            problems.append(Problem(node.lineno, f'Name "{node.id}" is not defined in the sandbox.'))
    return problems


def _check_bounds_binding(tree: ast.Module) -> list[Problem]:
    """OUTPUT_BOUNDS: at most one top-level ``OUTPUT_BOUNDS = <literal>``, bound nowhere else."""
    problems: list[Problem] = []
    top_level = [
        stmt
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == BOUNDS_NAME for t in stmt.targets)
    ]
    stores = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == BOUNDS_NAME and not isinstance(node.ctx, ast.Load)
    ]
    if len(stores) > 1 or len(stores) != len(top_level):
        line = stores[-1].lineno if stores else None
        problems.append(Problem(line, f"{BOUNDS_NAME} must be assigned once, at the top level."))
    for stmt in top_level:
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            problems.append(Problem(stmt.lineno, f"{BOUNDS_NAME} must be assigned on its own."))
        else:
            try:
                ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                problems.append(Problem(stmt.lineno, f"{BOUNDS_NAME} must be a literal."))
    return problems


def bounds_literal(tree: ast.Module) -> object | None:
    """The literal value of OUTPUT_BOUNDS, or ``None`` when the program declares none."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id == BOUNDS_NAME:
                value: object = ast.literal_eval(stmt.value)
                return value
    return None


def restrict(tree: ast.Module, names: frozenset[str], attributes: frozenset[str]) -> list[Problem]:
    """Run the policy over ``tree`` in place (it rewrites guarded access); return its problems.

    ``names`` are the builtins the sandbox offers, ``attributes`` every attribute name the
    attribute guard could allow on some type.
    """
    problems = _check_free_names(tree, names) + _check_bounds_binding(tree)
    policy = SandboxPolicy(attributes)
    try:
        policy.visit(tree)
    except RecursionError:
        return [Problem(None, "The program is nested too deeply to check.")]
    unique = set(problems + policy.problems)
    return sorted(unique, key=lambda p: (p.line or 0, p.message))


def compile_restricted(
    source: str, names: frozenset[str], attributes: frozenset[str]
) -> tuple[CodeType | None, list[Problem]]:
    """Parse, check and compile ``source``; the code object only when there are no problems."""
    tree, problems = parse(source)
    if tree is None:
        return None, problems
    problems = restrict(tree, names, attributes)
    if problems:
        return None, problems
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            code = compile(tree, FILENAME, "exec", dont_inherit=True)
    except SyntaxError as error:
        return None, [Problem(error.lineno, f"SyntaxError: {error.msg}")]
    except Warning as warning:
        return None, [Problem(None, f"{type(warning).__name__}: {warning}")]
    except (ValueError, RecursionError, MemoryError) as error:
        return None, [Problem(None, f"{type(error).__name__}: the program cannot be compiled")]
    return code, []
