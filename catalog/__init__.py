"""The declarative policy catalog: datasets, fields, verification templates, disclosure defaults.

Loaded from YAML files and validated strictly at start-up. An unknown key, type or field, a
template naming a missing field, a forbidden field given a use: each is refused with an error
naming the file and the key.
"""

from catalog.errors import PolicyError, PolicyProblem
from catalog.loader import load_catalog
from catalog.models import (
    Band,
    Catalog,
    Classification,
    CompareOp,
    Condition,
    Dataset,
    Disclosure,
    Field,
    FieldFormat,
    FieldType,
    Parameter,
    Reduce,
    ReduceOp,
    Template,
    Test,
    Use,
)

__all__ = [
    "Band",
    "Catalog",
    "Classification",
    "CompareOp",
    "Condition",
    "Dataset",
    "Disclosure",
    "Field",
    "FieldFormat",
    "FieldType",
    "Parameter",
    "PolicyError",
    "PolicyProblem",
    "Reduce",
    "ReduceOp",
    "Template",
    "Test",
    "Use",
    "load_catalog",
]
