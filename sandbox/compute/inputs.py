"""What a job's program is given: the contract's fields of the contract's datasets, and no more.

``data`` is one sequence of records across the contract's datasets; each record holds the
authorized fields of its dataset plus ``_dataset``, the dataset's name (no catalog field can be
called that: field names start with a letter). Fields that policy keeps for verification
templates alone (uses ``[verify]``) are never given to a program, whatever the contract says.

Rows are read with SQLAlchemy Core, each dataset in one ``SELECT`` of named columns, the subject
(for a subject-scoped job) a bound parameter on the dataset's indexed key in the lookup store;
a whole-data job scans the scan store. Each row's subject (its dataset key) is read too, but kept
beside the rows rather than in them: it decides the row's partition for private release, so all
of one subject's rows fall in one partition, without showing the key to a program whose contract
does not include it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from authz.contract_models import Authorization
from catalog import Catalog, Classification, Dataset, Use
from sandbox.compute.errors import InputTooLarge
from sandbox.data.mock import mock_rows
from sandbox.data.stores import DataStores, dataset_table

DATASET_FIELD = "_dataset"
MAX_ROWS = 2_000_000  # beyond this a job fails (InputTooLarge) before anything runs
MOCK_ROWS = 200  # per dataset, for a mock run
MOCK_SEED = 0  # the same mock rows for every mock run, so that a failure can be run again


def program_fields(dataset: Dataset, granted: list[str]) -> list[str]:
    """The fields of ``dataset`` a program may read under a grant of ``granted``, in policy order."""
    return [
        f.name
        for f in dataset.fields
        if f.name in granted
        and f.classification is not Classification.FORBIDDEN
        and any(use is not Use.VERIFY for use in f.uses)
    ]


def program_scope(catalog: Catalog, contract: Authorization) -> dict[str, list[str]]:
    """Dataset → the fields a program under ``contract`` is given (datasets still in the catalog)."""
    scope: dict[str, list[str]] = {}
    for name in sorted(contract.datasets):
        if name in catalog.datasets:
            fields = program_fields(catalog.dataset(name), contract.allowed_fields(name))
            if fields:
                scope[name] = fields
    return scope


@dataclass
class Inputs:
    """The rows a program runs over, each row's subject (for partitioning) and rows per dataset."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def input_store(stores: DataStores, subject: str | None) -> Engine:
    """Where a job's rows are read: by key from the lookup store for one subject, else scanned."""
    return stores.lookup if subject is not None else stores.scan


def input_needs(catalog: Catalog, scope: Mapping[str, list[str]]) -> list[tuple[Dataset, list[str]]]:
    """Each dataset of ``scope`` with the columns a job reads of it: its key and its scoped fields."""
    return [(dataset := catalog.dataset(name), [dataset.key, *fields]) for name, fields in scope.items()]


def load_inputs(
    stores: DataStores,
    catalog: Catalog,
    scope: Mapping[str, list[str]],
    *,
    subject: str | None,
    max_rows: int = MAX_ROWS,
) -> Inputs:
    """Read the scoped fields; only ``subject``'s rows when given. ``InputTooLarge`` past ``max_rows``."""
    inputs = Inputs()
    with stores.reading(input_store(stores, subject), input_needs(catalog, scope)) as conn:
        for name, fields in scope.items():
            dataset = catalog.dataset(name)
            table = dataset_table(dataset)
            key = table.c[dataset.key]
            query = select(key.label("subject_key"), *(table.c[f] for f in fields))
            if subject is not None:
                query = query.where(key == subject)
            query = query.limit(max_rows - len(inputs.rows) + 1)
            count = 0
            for row in conn.execute(query):
                if len(inputs.rows) >= max_rows:
                    raise InputTooLarge(f"the authorized data holds more than {max_rows} rows")
                inputs.subjects.append(str(row[0]))
                inputs.rows.append({DATASET_FIELD: name, **dict(zip(fields, row[1:], strict=True))})
                count += 1
            inputs.counts[name] = count
    return inputs


def mock_inputs(catalog: Catalog, scope: Mapping[str, list[str]]) -> Inputs:
    """Mock rows of ``scope`` made from the schema alone (``GET /v1/datasets/{name}/mock``'s), in
    the shape :func:`load_inputs` gives real ones: no store is read."""
    inputs = Inputs()
    for name, fields in scope.items():
        rows = mock_rows(catalog.dataset(name), MOCK_ROWS, seed=MOCK_SEED)
        inputs.rows += [{DATASET_FIELD: name, **{f: row[f] for f in fields}} for row in rows]
        inputs.subjects += [f"mock-{name}-{index}" for index in range(len(rows))]
        inputs.counts[name] = len(rows)
    return inputs
