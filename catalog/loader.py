"""Reading the catalog from a folder of YAML files, collecting every problem before refusing.

Layout::

    policies/
      disclosure.yaml       # Disclosure
      templates.yaml        # {templates: [Template, ...]}
      datasets/<name>.yaml  # one Dataset per file; the file stem is the dataset name
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from catalog.errors import PolicyError, PolicyProblem
from catalog.models import Catalog, Dataset, Disclosure, Template

M = TypeVar("M", bound=BaseModel)

_TOP_LEVEL = {"disclosure.yaml", "templates.yaml"}

# A policy file is a few KiB (the shipped ones are under 5); a file past this is a mistake (a data
# file dropped in the folder), and reading it would hold up every process that opens the catalog.
MAX_POLICY_FILE_BYTES = 256 * 1024

# libyaml's parser where PyYAML was built with it (the wheels are): the same safe constructors,
# about ten times faster than the pure-Python one.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_UNREADABLE = object()  # what read_yaml gives for a file it could not read (the problem is listed)


class _TemplatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates: list[Template]


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"])


class _Reader:
    """Collects problems across files so one run reports all of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[PolicyProblem] = []
        self.broken: set[str] = set()  # stems of dataset files that failed to parse

    def name(self, path: Path) -> str:
        return str(path.relative_to(self.root.parent)) if path.is_relative_to(self.root.parent) else str(path)

    def add(self, path: Path, key: str, message: str) -> None:
        self.problems.append(PolicyProblem(file=self.name(path), key=key, message=message))

    def read_yaml(self, path: Path) -> Any:
        """The file's YAML, or :data:`_UNREADABLE` with the reason added as a problem."""
        try:
            size = path.stat().st_size
            if size > MAX_POLICY_FILE_BYTES:
                limit = MAX_POLICY_FILE_BYTES // 1024
                self.add(path, "(file)", f"{size:,} bytes, over the {limit} KiB a policy file may have")
                return _UNREADABLE
            return yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", exc))
            if "nesting depth" in problem:  # libyaml's own limit: tens of thousands of brackets
                self.add(path, "(yaml)", "nested too deeply")
                return _UNREADABLE
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
            self.add(path, where, f"not valid YAML: {problem}")
        except UnicodeDecodeError:
            self.add(path, "(file)", "not UTF-8 text")
        except OSError as exc:  # a dangling link, a folder named *.yaml, no read permission
            self.add(path, "(file)", f"cannot be read: {exc.strerror or exc}")
        except RecursionError:  # the pure-Python parser's limit
            self.add(path, "(yaml)", "nested too deeply")
        return _UNREADABLE

    def parse(self, path: Path, model: type[M], raw: Any) -> M | None:
        if raw is _UNREADABLE:  # its problem is listed already
            return None
        if not isinstance(raw, dict):
            self.add(path, "(top level)", "must be a mapping")
            return None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                self.add(path, _key_path(error["loc"]), _message(error))
            return None


def _digest(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_catalog(root: Path) -> Catalog:
    """Load and validate the catalog under ``root``; raise :class:`PolicyError` listing every problem."""
    reader = _Reader(root)
    if not root.is_dir():
        raise PolicyError([PolicyProblem(file=str(root), key="(folder)", message="policy folder not found")])
    for stray in sorted(root.glob("*.y*ml")):
        if stray.name not in _TOP_LEVEL:
            reader.add(
                stray, "(file)", "unknown policy file (expected disclosure.yaml, templates.yaml, datasets/)"
            )

    datasets: dict[str, Dataset] = {}
    dataset_files = sorted((root / "datasets").glob("*.y*ml"))
    if not dataset_files:
        reader.add(
            root / "datasets", "(folder)", "no dataset files: an empty policy is an error, not 'allow all'"
        )
    for path in dataset_files:
        dataset = reader.parse(path, Dataset, reader.read_yaml(path))
        if dataset is None:
            reader.broken.add(path.stem)
            continue
        if dataset.name != path.stem:
            reader.add(
                path, "name", f"dataset {dataset.name!r} must live in a file named {dataset.name}.yaml"
            )
        for key, message in dataset.problems():
            reader.add(path, key, message)
        datasets[dataset.name] = dataset
    _check_tables(reader, dataset_files, datasets)

    disclosure_path = root / "disclosure.yaml"
    disclosure = Disclosure()
    if disclosure_path.exists():
        parsed = reader.parse(disclosure_path, Disclosure, reader.read_yaml(disclosure_path))
        if parsed is not None:
            disclosure = parsed
            for key, message in disclosure.problems():
                reader.add(disclosure_path, key, message)
    for path in dataset_files:
        own = datasets.get(path.stem)
        if own is not None and own.min_cell_size is not None and own.min_cell_size < disclosure.min_cell_size:
            reader.add(path, "min_cell_size", f"below the bureau default {disclosure.min_cell_size}")

    templates = _load_templates(reader, root / "templates.yaml", datasets)
    if reader.problems:
        raise PolicyError(reader.problems)
    files = [*dataset_files, *(p for p in (disclosure_path, root / "templates.yaml") if p.exists())]
    files.sort()
    return Catalog(
        datasets=datasets,
        templates=templates,
        disclosure=disclosure,
        sha256=_digest(files, root),
        files=[str(p.relative_to(root)) for p in files],
    )


def _check_tables(reader: _Reader, files: list[Path], datasets: dict[str, Dataset]) -> None:
    owners: dict[str, str] = {}
    for path in files:
        dataset = datasets.get(path.stem)
        if dataset is None:
            continue
        other = owners.setdefault(dataset.table_name, dataset.name)
        if other != dataset.name:
            reader.add(path, "table", f"table {dataset.table_name!r} is already used by dataset {other!r}")


def _load_templates(reader: _Reader, path: Path, datasets: dict[str, Dataset]) -> dict[str, Template]:
    if not path.exists():
        return {}
    parsed = reader.parse(path, _TemplatesFile, reader.read_yaml(path))
    if parsed is None:
        return {}
    templates: dict[str, Template] = {}
    for index, template in enumerate(parsed.templates):
        if template.name in templates:
            reader.add(path, f"templates[{index}].name", f"template {template.name!r} is declared twice")
        for key, message in template.problems(datasets.get(template.dataset)):
            if key == "dataset" and template.dataset in reader.broken:
                continue  # its own file's problems are already reported; "missing" would mislead
            reader.add(path, f"templates[{index}].{key}", message)
        templates[template.name] = template
    return templates
