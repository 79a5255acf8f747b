"""The catalog as clients see it: datasets, templates, mock rows (never real values)."""

from __future__ import annotations

from flask.testing import FlaskClient

from sandbox.data.codes import is_valid_uscc
from tests.api.conftest import Party


def test_datasets_show_fields_with_classification_uses_bounds_and_key_sets(
    client: FlaskClient, operator: Party
) -> None:
    body = client.get("/v1/datasets", headers=operator.headers).get_json()
    tax = next(d for d in body["datasets"] if d["name"] == "enterprise_tax")
    assert tax["key"] == "credit_code"
    # What an aggregate's noise is scaled by: up to five rows a firm, one per year.
    assert (tax["max_rows_per_subject"], tax["row_key"]) == (5, ["year"])
    firms = next(d for d in body["datasets"] if d["name"] == "enterprises")
    assert (firms["max_rows_per_subject"], firms["row_key"]) == (1, [])
    fields = {f["name"]: f for f in tax["fields"]}
    assert fields["annual_tax"]["classification"] == "sensitive"
    assert fields["annual_tax"]["bounds"] == [0, 50000000]
    assert "历下区" in fields["district"]["key_set"]
    assert fields["district"]["uses"] == ["filter", "group_by"]


def test_templates_list_parameters_consent_and_answer(client: FlaskClient, operator: Party) -> None:
    templates = {
        t["name"]: t for t in client.get("/v1/templates", headers=operator.headers).get_json()["templates"]
    }
    assert templates["tax_paid_at_least"]["consent_required"] is True
    assert [p["name"] for p in templates["tax_paid_at_least"]["parameters"]] == ["threshold", "year"]
    assert templates["electricity_usage_band"]["answer"] == "band"
    assert templates["electricity_usage_band"]["bands"] == ["none", "low", "medium", "high"]


def test_mock_rows_have_the_schema_and_no_forbidden_field(client: FlaskClient, operator: Party) -> None:
    response = client.get("/v1/datasets/enterprises/mock?rows=5&seed=1", headers=operator.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["mock"] is True and len(body["rows"]) == 5
    assert all("legal_rep_id" not in row for row in body["rows"])
    assert all(is_valid_uscc(row["credit_code"]) for row in body["rows"])
    again = client.get("/v1/datasets/enterprises/mock?rows=5&seed=1", headers=operator.headers).get_json()
    assert again == body


def test_mock_refuses_bad_requests(client: FlaskClient, operator: Party) -> None:
    cases = {
        "/v1/datasets/nope/mock": (404, "not_found"),
        # Out of range, as rows=-1 is: 422 (it was 413, which is for a body over its size).
        "/v1/datasets/enterprises/mock?rows=100000": (422, "invalid"),
        "/v1/datasets/enterprises/mock?rows=-1": (422, "invalid"),
        "/v1/datasets/enterprises/mock?rows=abc": (422, "invalid"),
        "/v1/datasets/enterprises/mock?rows=1&rows=2": (400, "bad_request"),
        "/v1/datasets/enterprises/mock?color=red": (422, "invalid"),
    }
    for path, (status, code) in cases.items():
        response = client.get(path, headers=operator.headers)
        assert response.status_code == status, (path, response.get_json())
        assert response.get_json()["error"]["code"] == code
