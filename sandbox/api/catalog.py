"""The policy catalog as clients see it: datasets, fields and uses, templates, mock rows."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz.permissions import Permission
from catalog import Catalog
from core.errors import Invalid, NotFound
from sandbox.api.parsing import parse_query
from sandbox.api.registry import route
from sandbox.data.mock import mock_rows

bp = Blueprint("catalog", __name__, url_prefix="/v1")


class DatasetList(BaseModel):
    """Datasets with their fields, classifications and allowed uses."""

    datasets: list[dict[str, Any]]


class TemplateList(BaseModel):
    """Verification templates."""

    templates: list[dict[str, Any]]


class MockQuery(BaseModel):
    """How many mock rows, and an optional seed for repeatable rows."""

    model_config = ConfigDict(extra="forbid")
    rows: int = Field(default=10, ge=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class MockRows(BaseModel):
    """Synthetic rows shaped like the real table; never real values."""

    dataset: str
    mock: bool
    rows: list[dict[str, Any]]


def _datasets(catalog: Catalog) -> list[dict[str, Any]]:
    out = []
    for dataset in catalog.datasets.values():
        fields = []
        for field in dataset.fields:
            item: dict[str, Any] = {
                "name": field.name,
                "type": field.type.value,
                "classification": field.classification.value,
                "uses": [u.value for u in field.uses],
                "description": field.description,
            }
            if field.bounds is not None:
                item["bounds"] = list(field.bounds)
            if field.key_set is not None:
                item["key_set"] = list(field.key_set)
            fields.append(item)
        out.append(
            {
                "name": dataset.name,
                "description": dataset.description,
                "key": dataset.key,
                "min_cell_size": catalog.min_cell_size(dataset.name),
                "max_rows_per_subject": dataset.max_rows_per_subject,
                "row_key": list(dataset.row_key),
                "fields": fields,
            }
        )
    return out


@route(
    bp,
    "/datasets",
    permission=Permission.CATALOG_READ,
    response=DatasetList,
    summary="Datasets, fields, classifications and allowed uses",
)
def datasets() -> Response:
    """The whole catalog of datasets."""
    return jsonify({"datasets": _datasets(current_app.extensions["sandbox"].catalog)})


@route(
    bp,
    "/templates",
    permission=Permission.CATALOG_READ,
    response=TemplateList,
    summary="Verification templates",
)
def templates() -> Response:
    """Name, dataset, parameters, consent and answer kind of each template."""
    catalog: Catalog = current_app.extensions["sandbox"].catalog
    out = []
    for template in catalog.templates.values():
        item: dict[str, Any] = {
            "name": template.name,
            "dataset": template.dataset,
            "description": template.description,
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type.value,
                    **({"many": True} if p.many else {}),
                    **({"choices": p.choices} if p.choices else {}),
                }
                for p in template.parameters
            ],
            "consent_required": template.consent_required,
            "answer": template.answer,
        }
        if template.bands:
            item["bands"] = [b.label for b in template.bands]
        out.append(item)
    return jsonify({"templates": out})


@route(
    bp,
    "/datasets/<name>/mock",
    permission=Permission.CATALOG_READ,
    query=MockQuery,
    response=MockRows,
    summary="Synthetic rows shaped like the real table (never real values)",
)
def mock(name: str) -> Response:
    """Generated from the schema alone; forbidden fields are left out."""
    catalog: Catalog = current_app.extensions["sandbox"].catalog
    if name not in catalog.datasets:
        raise NotFound(f"no dataset {name!r}")
    query = parse_query(MockQuery)
    limit = catalog.disclosure.mock_rows_max
    if query.rows > limit:
        # A parameter out of its range, as rows=0 is (422); not 413, which is for a request's body.
        raise Invalid(
            f"at most {limit} mock rows per request",
            details=[{"field": "rows", "message": f"at most {limit} (the policy's mock_rows_max)"}],
        )
    dataset = catalog.dataset(name)
    return jsonify({"dataset": name, "mock": True, "rows": mock_rows(dataset, query.rows, seed=query.seed)})
