"""ruff and mypy stay clean: part of the suite, so the one test command keeps them honest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extras: pip install -e '.[test]'")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_is_clean() -> None:
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lower_layers_never_import_higher_ones() -> None:
    """core ← catalog ← audit ← (operators, authz) ← sandbox: checked on the source text."""
    import ast

    rank = {"core": 0, "catalog": 1, "audit": 1, "operators": 2, "authz": 2, "sandbox": 3, "policies": 0}
    problems = []
    for package, level in rank.items():
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if (
                        top in rank
                        and top != package
                        and rank[top] >= level
                        and not (package == "core" and top == "policies")
                    ):
                        problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, problems
