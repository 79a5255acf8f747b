"""Typed shapes of the policy catalog, and the rules a valid catalog obeys.

Pydantic checks structure (every model forbids unknown keys); the ``problems()`` methods check
meaning (a key field that exists, bounds on aggregated numbers, no use for a forbidden field) and
return ``(key path, message)`` pairs so the loader can name the file and the key of each.
"""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydField

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Scalar = str | int | float | bool | date

Problems = list[tuple[str, str]]

MAX_ROWS_PER_SUBJECT = 10_000


class FieldType(StrEnum):
    """The value type of a field (the API's catalog vocabulary)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"

    @property
    def numeric(self) -> bool:
        """Whether values of this type can be summed and clamped."""
        return self in (FieldType.INTEGER, FieldType.NUMBER)


class Classification(StrEnum):
    """Classification level, from least to most protected."""

    PUBLIC = "public"
    INTERNAL = "internal"
    SENSITIVE = "sensitive"
    FORBIDDEN = "forbidden"


class Use(StrEnum):
    """What a field may be used for. A field with only ``verify`` is reachable through templates only."""

    KEY = "key"
    FILTER = "filter"
    GROUP_BY = "group_by"
    AGGREGATE = "aggregate"
    VERIFY = "verify"


class FieldFormat(StrEnum):
    """Semantic format of a string field, used to generate realistic synthetic values."""

    USCC = "uscc"  # unified social credit code, GB 32100-2015
    RESIDENT_ID = "resident_id"  # resident identity number, GB 11643-1999
    PERSON_NAME = "person_name"
    FIRM_NAME = "firm_name"
    ADDRESS = "address"


class CompareOp(StrEnum):
    """Comparison operators of template conditions and tests."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"


class ReduceOp(StrEnum):
    """How a template combines the subject's matching rows into one value."""

    EXISTS = "exists"
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    MIN = "min"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Field(_Strict):
    """One column of a dataset."""

    name: Identifier
    type: FieldType
    classification: Classification
    uses: list[Use] = PydField(default_factory=list)
    description: str = ""
    format: FieldFormat | None = None
    nullable: bool = False
    bounds: tuple[float, float] | None = None
    key_set: list[str | int | bool] | None = None

    def allows(self, use: Use) -> bool:
        """Whether policy allows this field for ``use``."""
        return use in self.uses

    def problems(self) -> Problems:
        """Meaning checks of a single field."""
        out: Problems = []
        if len(set(self.uses)) != len(self.uses):
            out.append(("uses", "a use is listed twice"))
        if self.classification is Classification.FORBIDDEN and self.uses:
            out.append(("uses", "a forbidden field may not be given any use"))
        if Use.KEY in self.uses and self.type is not FieldType.STRING:
            out.append(("uses", "a key field must be of type string"))
        if Use.AGGREGATE in self.uses:
            if not self.type.numeric:
                out.append(("uses", f"aggregate needs a numeric field, not {self.type.value}"))
            elif self.bounds is None:
                out.append(("bounds", "an aggregated numeric field must declare clamping bounds"))
        if self.bounds is not None:
            if not self.type.numeric:
                out.append(("bounds", "bounds are only for integer and number fields"))
            lo, hi = self.bounds
            if not (math.isfinite(lo) and math.isfinite(hi)):
                # An infinite bound clamps nothing, and noise calibrated to it is infinite.
                out.append(("bounds", f"bounds must be finite numbers, not {lo} and {hi}"))
            elif not lo < hi:
                out.append(("bounds", f"lower bound {lo} must be below upper bound {hi}"))
            elif self.nullable and Use.AGGREGATE in self.uses and not lo <= 0 <= hi:
                # An empty value adds nothing to a sum but counts as a row: a mean's noise is
                # calibrated to values within the bounds, and an empty one weighs as 0.
                out.append(
                    (
                        "bounds",
                        f"an aggregated field that may be empty needs 0 within its bounds, not {lo}-{hi}",
                    )
                )
        if Use.GROUP_BY in self.uses:
            if not self.key_set:
                out.append(("key_set", "a group-by field must list its public key set"))
            if self.classification in (Classification.SENSITIVE, Classification.FORBIDDEN):
                out.append(("uses", "a sensitive field may not be a group-by field"))
        if self.key_set is not None:
            if len(set(map(str, self.key_set))) != len(self.key_set):
                out.append(("key_set", "a key is listed twice"))
            if self.type in (FieldType.DATE, FieldType.NUMBER):
                out.append(("key_set", f"a key set cannot be given to a {self.type.value} field"))
            elif any(not _of_type(key, self.type) for key in self.key_set):
                kind = ("an " if self.type is FieldType.INTEGER else "a ") + self.type.value
                out.append(("key_set", f"every key of {kind} field must be {kind}"))
        if self.format is not None and self.type is not FieldType.STRING:
            out.append(("format", "a format is only for string fields"))
        return out


def _of_type(value: object, kind: FieldType) -> bool:
    """Whether a key-set value is of the field's type (YAML's ``2020`` and ``"2020"`` differ)."""
    if kind is FieldType.BOOLEAN:
        return isinstance(value, bool)
    if kind is FieldType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


class Dataset(_Strict):
    """A government table and the policy over its fields."""

    name: Identifier
    description: str
    table: Identifier | None = None
    key: Identifier
    fields: list[Field]
    min_cell_size: int | None = PydField(default=None, ge=1)
    # The most rows one subject may have (a firm's tax years, a person's properties): checked when
    # data is loaded, and what an aggregate's noise is scaled by, so that its guarantee covers a
    # subject and not one of its rows. ``row_key`` names the fields that, with the key, tell one
    # subject's rows apart (a tax year): filters that pin them to fewer values need less noise,
    # and one with a key set holds only its keys (checked at load too), so a subject has at most
    # one row per key: a year of ``utilities`` is twelve rows a firm, not the sixty of five years.
    max_rows_per_subject: int = PydField(default=1, ge=1, le=MAX_ROWS_PER_SUBJECT)
    row_key: list[Identifier] = PydField(default_factory=list)

    @property
    def table_name(self) -> str:
        """The physical table name in the data database."""
        return self.table or self.name

    @property
    def key_field(self) -> Field:
        """The field that finds a subject."""
        return self.field(self.key)

    def field(self, name: str) -> Field:
        """The field called ``name``; ``KeyError`` if there is none."""
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)

    def has_field(self, name: str) -> bool:
        """Whether the dataset has a field called ``name``."""
        return any(item.name == name for item in self.fields)

    def problems(self) -> Problems:
        """Meaning checks of the dataset and each of its fields."""
        out: Problems = []
        if not self.fields:
            out.append(("fields", "a dataset needs at least one field"))
        seen: set[str] = set()
        for index, item in enumerate(self.fields):
            if item.name in seen:
                out.append((f"fields[{index}].name", f"field {item.name!r} is declared twice"))
            seen.add(item.name)
            out.extend((f"fields[{index}].{key}", message) for key, message in item.problems())
            if Use.KEY in item.uses and item.name != self.key:
                out.append((f"fields[{index}].uses", f"only the dataset key {self.key!r} may have use 'key'"))
        if self.key not in seen:
            out.append(("key", f"the key names field {self.key!r}, which the dataset does not have"))
        elif Use.KEY not in self.key_field.uses:
            out.append(("key", f"the key field {self.key!r} must have use 'key'"))
        out.extend(self._row_key_problems(seen))
        return out

    def _row_key_problems(self, names: set[str]) -> Problems:
        out: Problems = []
        if self.row_key and self.max_rows_per_subject == 1:
            out.append(("row_key", "a row key is for a dataset with more than one row per subject"))
        if len(set(self.row_key)) != len(self.row_key):
            out.append(("row_key", "a field is listed twice"))
        for index, name in enumerate(self.row_key):
            if name not in names:
                out.append((f"row_key[{index}]", f"the dataset has no field {name!r}"))
            elif name == self.key:
                out.append((f"row_key[{index}]", "a row key tells one subject's rows apart; not the key"))
            elif not self.field(name).allows(Use.FILTER):
                out.append((f"row_key[{index}]", f"field {name!r} must have use 'filter'"))
            elif self.field(name).nullable:
                message = f"field {name!r} is nullable; a row key has a value in every row"
                out.append((f"row_key[{index}]", message))
            elif self.field(name).type is FieldType.NUMBER:
                # A row key's values are counted off the filters (one for ``eq``, a list's length,
                # a whole range's width): a real number has no such count.
                message = f"field {name!r} is a number; a row key needs countable values"
                out.append((f"row_key[{index}]", message))
        return out


class Parameter(_Strict):
    """A parameter a client supplies to a verification template."""

    name: Identifier
    type: FieldType
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: list[str | int] | None = None
    max_length: int = PydField(default=64, ge=1, le=1024)
    many: bool = False  # a list of values, for the "in" operator
    # A numeric parameter's values are whole multiples of ``step``: a threshold any client may
    # move by a cent lets 36 yes/no answers spell out the value itself (a privacy sweep read a
    # firm's exact capital so); with a step the answers narrow it to a band of that width.
    step: float | None = PydField(default=None, gt=0)

    def problems(self) -> Problems:
        """Meaning checks of a parameter."""
        out: Problems = []
        if (self.min is not None or self.max is not None) and not self.type.numeric:
            out.append(("min", "min and max are only for numeric parameters"))
        if self.step is not None and not self.type.numeric:
            out.append(("step", "step is only for numeric parameters"))
        if self.step is not None and self.type is FieldType.INTEGER and not float(self.step).is_integer():
            out.append(("step", f"step {self.step} of an integer parameter is not a whole number"))
        if self.min is not None and self.max is not None and self.min > self.max:
            out.append(("min", f"min {self.min} is above max {self.max}"))
        return out


class _Operand(_Strict):
    param: Identifier | None = None
    value: Scalar | list[Scalar] | None = None

    def operand_problems(self) -> Problems:
        if (self.param is None) == (self.value is None):
            return [("param", "give exactly one of 'param' and 'value'")]
        return []


class Condition(_Operand):
    """A filter on the subject's rows: ``field op (param | value)``."""

    field: Identifier
    op: CompareOp


class Test(_Operand):
    """The comparison that turns the reduced value into the boolean answer."""

    op: CompareOp


class Reduce(_Strict):
    """How the subject's matching rows become one value."""

    op: ReduceOp
    field: Identifier | None = None


class Band(_Strict):
    """An answer band: values below ``below`` (the last band has no upper edge)."""

    label: Identifier
    below: float | None = None


class Template(_Strict):
    """A named verification: answers a boolean or a band about one subject, never the value."""

    name: Identifier
    dataset: Identifier
    description: str
    parameters: list[Parameter] = PydField(default_factory=list)
    consent_required: bool = True
    answer: Literal["boolean", "band"] = "boolean"
    where: list[Condition] = PydField(default_factory=list)
    reduce: Reduce
    test: Test | None = None
    bands: list[Band] | None = None
    unknown_subject: bool | str | None = None

    def parameter(self, name: str) -> Parameter | None:
        """The parameter called ``name``, if any."""
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def unknown_answer(self) -> bool | str:
        """What an unknown subject answers: indistinguishable from a real answer."""
        if self.unknown_subject is not None:
            return self.unknown_subject
        if self.answer == "band" and self.bands:
            return self.bands[0].label
        return False

    def touched_fields(self) -> list[str]:
        """Every field of the dataset the template reads, in order, without repeats."""
        names = [c.field for c in self.where]
        if self.reduce.field:
            names.append(self.reduce.field)
        return list(dict.fromkeys(names))

    def problems(self, dataset: Dataset | None) -> Problems:
        """Meaning checks of the template against its dataset (``None`` when it is missing)."""
        out: Problems = []
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            out.append(("parameters", "a parameter is declared twice"))
        for index, param in enumerate(self.parameters):
            out.extend((f"parameters[{index}].{k}", m) for k, m in param.problems())
        if dataset is None:
            out.append(("dataset", f"names dataset {self.dataset!r}, which the catalog does not have"))
        out.extend(self._operand_problems())
        out.extend(self._shape_problems())
        if dataset is not None:
            out.extend(self._field_problems(dataset))
        return out

    def _operand_problems(self) -> Problems:
        out: Problems = []
        operands: list[tuple[str, _Operand]] = [(f"where[{i}]", c) for i, c in enumerate(self.where)]
        if self.test is not None:
            operands.append(("test", self.test))
        for path, operand in operands:
            out.extend((f"{path}.{k}", m) for k, m in operand.operand_problems())
            if operand.param is not None and self.parameter(operand.param) is None:
                out.append((f"{path}.param", f"names parameter {operand.param!r}, which is not declared"))
        if self.test is not None and self.test.op is CompareOp.IN:
            out.append(("test.op", "a test compares one value; 'in' is for conditions"))
        threshold = self.parameter(self.test.param) if self.test is not None and self.test.param else None
        if threshold is not None and threshold.type.numeric and threshold.step is None:
            # Review: without a step a client moves the threshold by a cent and spells the value out.
            out.append(("test.param", f"the threshold {threshold.name} needs a step in its parameter"))
        return out

    def _shape_problems(self) -> Problems:
        out: Problems = []
        needs_field = self.reduce.op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.MIN)
        if needs_field and self.reduce.field is None:
            out.append(("reduce.field", f"reduce '{self.reduce.op.value}' needs a field"))
        if not needs_field and self.reduce.field is not None:
            out.append(("reduce.field", f"reduce '{self.reduce.op.value}' takes no field"))
        if self.answer == "boolean":
            if self.bands is not None:
                out.append(("bands", "bands are for answer 'band'"))
            if self.reduce.op is ReduceOp.EXISTS and self.test is not None:
                out.append(("test", "reduce 'exists' answers by itself; remove the test"))
            if self.reduce.op is not ReduceOp.EXISTS and self.test is None:
                out.append(("test", "a boolean answer needs a test"))
            if self.unknown_subject is not None and not isinstance(self.unknown_subject, bool):
                out.append(("unknown_subject", "a boolean template answers true or false"))
        else:
            out.extend(self._band_problems())
        return out

    def _band_problems(self) -> Problems:
        out: Problems = []
        if self.test is not None:
            out.append(("test", "a band answer takes bands, not a test"))
        if self.reduce.op is ReduceOp.EXISTS:
            out.append(("reduce.op", "a band answer needs a numeric reduction"))
        if not self.bands or len(self.bands) < 2:
            out.append(("bands", "a band answer needs at least two bands"))
            return out
        edges = [b.below for b in self.bands]
        if edges[-1] is not None or any(e is None for e in edges[:-1]):
            out.append(("bands", "every band but the last needs 'below'; the last has none"))
        elif edges[:-1] != sorted(edges[:-1]) or len(set(edges[:-1])) != len(edges) - 1:  # type: ignore[type-var]
            out.append(("bands", "band edges must rise strictly"))
        labels = [b.label for b in self.bands]
        if len(set(labels)) != len(labels):
            out.append(("bands", "a band label is used twice"))
        if self.unknown_subject is not None and self.unknown_subject not in labels:
            out.append(("unknown_subject", "must be one of the band labels"))
        return out

    def _field_problems(self, dataset: Dataset) -> Problems:
        out: Problems = []
        refs = [(f"where[{i}].field", c.field) for i, c in enumerate(self.where)]
        if self.reduce.field is not None:
            refs.append(("reduce.field", self.reduce.field))
        for path, name in refs:
            if not dataset.has_field(name):
                out.append((path, f"names field {name!r}, which dataset {dataset.name!r} does not have"))
                continue
            item = dataset.field(name)
            if not item.allows(Use.VERIFY):
                out.append((path, f"field {name!r} does not allow use 'verify'"))
            summed = path == "reduce.field" and self.reduce.op is ReduceOp.SUM
            if summed and not item.type.numeric:
                out.append((path, f"cannot sum {item.type.value} field {name!r}"))
        return out


class Disclosure(_Strict):
    """Bureau-wide disclosure defaults and the ceilings no contract may pass."""

    min_cell_size: int = PydField(default=10, ge=1)
    epsilon_total_max: float = PydField(default=10.0, gt=0)
    epsilon_per_query_max: float = PydField(default=1.0, gt=0)
    # An aggregate's suppression threshold is (ε, δ)-DP; each answer's δ is this times its share of
    # the contract's ε, so the budget of record, spending ε, holds a contract's δ to this too.
    delta_total: float = PydField(default=1e-5, gt=0, le=1e-3)
    daily_quota_max: int = PydField(default=100_000, ge=1)
    valid_days_max: int = PydField(default=366, ge=1)
    mock_rows_max: int = PydField(default=1000, ge=1)

    def problems(self) -> Problems:
        """Meaning checks of the defaults."""
        if self.epsilon_per_query_max > self.epsilon_total_max:
            return [("epsilon_per_query_max", "the per-query cap exceeds the total")]
        return []


class Catalog(BaseModel):
    """A validated catalog, with the hash of the files it came from."""

    model_config = ConfigDict(frozen=True)

    datasets: dict[str, Dataset]
    templates: dict[str, Template]
    disclosure: Disclosure
    sha256: str
    files: list[str]

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name``; ``KeyError`` if there is none."""
        return self.datasets[name]

    def template(self, name: str) -> Template:
        """The template called ``name``; ``KeyError`` if there is none."""
        return self.templates[name]

    def min_cell_size(self, dataset: str) -> int:
        """The policy's minimum cell size for ``dataset``: its own, or the default."""
        own = self.datasets[dataset].min_cell_size
        return max(own or 0, self.disclosure.min_cell_size)
