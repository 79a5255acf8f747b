"""The auditor's API: search with paging, checkpoints, proofs that verify offline, the export."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask.testing import FlaskClient

from audit import merkle
from audit.notes import verify_note
from audit.sources import keys_from_jwks
from audit.verify import (
    Report,
    SourcedCheckpoint,
    Window,
    read_export,
    verify_log,
    verify_window,
)
from core.clock import rfc3339
from sandbox.runtime import Runtime
from tests.api.conftest import CONTRACT_REQUEST, Party


def _jwks_keys(client: FlaskClient) -> list[Ed25519PublicKey]:
    return keys_from_jwks(client.get("/.well-known/jwks.json").get_json())


def _request_contract(client: FlaskClient, operator: Party) -> dict[str, object]:
    response = client.post("/v1/authorizations", json=CONTRACT_REQUEST, headers=operator.headers)
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def test_events_search_filters_and_pages_in_log_order(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    for _ in range(3):
        _request_contract(client, operator)
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {"actor": f"operator:{operator.id}", "action": "authorization.request", "limit": 2}
        if cursor is not None:
            query["cursor"] = cursor
        page = client.get("/v1/audit/events", query_string=query, headers=auditor.headers).get_json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    seqs = [int(e["seq"]) for e in seen]  # type: ignore[call-overload]
    assert seqs == sorted(seqs)
    assert all(e["actor"] == {"kind": "operator", "id": operator.id} for e in seen)
    assert all(len(str(e["leaf_hash"])) == 64 for e in seen)


def test_events_search_by_outcome_finds_a_denial(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    denied = client.get("/v1/audit/events", headers=operator.headers)
    assert denied.status_code == 403
    page = client.get(
        "/v1/audit/events", query_string={"outcome": "denied", "actor": operator.id}, headers=auditor.headers
    ).get_json()
    assert [e["error_code"] for e in page["events"]] == ["forbidden"]
    assert page["events"][0]["request_id"] == denied.headers["X-Request-Id"]


def test_bad_search_terms_are_422(client: FlaskClient, auditor: Party) -> None:
    for query in (
        {"limit": 0},
        {"limit": 5000},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},
        {"outcome": "maybe"},
        {"cursor": -1},
        {"colour": "red"},
        # Valid times whose UTC equivalent is outside year 1-9999: an overflow deep in the query.
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-01:00"},
        # Seconds (or milliseconds) since 1970, which pydantic had taken (found in a sweep).
        {"since": "0"},
        {"since": "-1"},
        {"since": "1733567000.5"},
        {"until": "99999999999999"},
        {"since": "2026-11-01T00:00Z"},  # RFC 3339 has seconds
    ):
        for path in ("/v1/audit/events", "/v1/audit/export"):
            response = client.get(path, query_string=query, headers=auditor.headers)
            assert response.status_code == 422, (path, query, response.get_json())
    assert "RFC 3339" in response.get_data(as_text=True)
    edge = {"since": "0001-01-01T00:00:00+00:00", "until": "9999-12-31T23:59:59+00:00"}
    assert client.get("/v1/audit/events", query_string=edge, headers=auditor.headers).status_code == 200
    # The export checks its window before it records the export and starts the stream.
    before = client.get("/v1/audit/events", query_string={"limit": 1000}, headers=auditor.headers)
    for query in ({"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"}):
        response = client.get("/v1/audit/export", query_string=query, headers=auditor.headers)
        assert response.status_code == 422 and response.get_json()["error"]["code"] == "invalid"
    after = client.get("/v1/audit/events", query_string={"action": "audit.export"}, headers=auditor.headers)
    assert after.get_json()["events"] == [] and before.status_code == 200


def test_checkpoint_is_a_signed_note_that_verifies_with_the_published_key(
    client: FlaskClient, auditor: Party, runtime: Runtime
) -> None:
    made = client.post("/v1/audit/checkpoints", headers=auditor.headers)
    assert made.status_code == 201
    latest = client.get("/v1/audit/checkpoint", headers=auditor.headers).get_json()
    assert latest == made.get_json()
    checkpoint = verify_note(latest["note"], _jwks_keys(client))
    assert checkpoint.tree_size == latest["tree_size"]
    assert checkpoint.root_hash.hex() == latest["root_hash"]
    assert checkpoint.origin == runtime.settings.audit_origin
    copied = runtime.settings.checkpoints_file.read_text(encoding="utf-8").splitlines()
    assert json.loads(copied[-1])["note"] == latest["note"]
    # Nothing added since: the same checkpoint, 200 not 201, and not copied to the file again.
    again = client.post("/v1/audit/checkpoints", headers=auditor.headers)
    assert again.status_code == 200 and again.get_json() == latest
    assert runtime.settings.checkpoints_file.read_text(encoding="utf-8").splitlines() == copied


def test_no_checkpoint_yet_is_404(client: FlaskClient, auditor: Party) -> None:
    response = client.get("/v1/audit/checkpoint", headers=auditor.headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_operator_gets_an_inclusion_proof_of_its_own_event_only(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    contract = _request_contract(client, operator)
    page = client.get(
        "/v1/audit/events", query_string={"target_id": contract["id"]}, headers=auditor.headers
    ).get_json()
    seq = page["events"][0]["seq"]
    proof = client.get("/v1/audit/proofs/inclusion", query_string={"seq": seq}, headers=operator.headers)
    assert proof.status_code == 200, proof.get_json()
    body = proof.get_json()
    assert merkle.hash_leaf(body["entry"].encode()).hex() == body["leaf_hash"]
    assert merkle.verify_inclusion(
        seq,
        body["tree_size"],
        bytes.fromhex(body["leaf_hash"]),
        [bytes.fromhex(p) for p in body["audit_path"]],
        bytes.fromhex(body["root_hash"]),
    )
    signed = verify_note(body["checkpoint"]["note"], _jwks_keys(client))
    assert signed.root_hash.hex() == body["root_hash"] and signed.tree_size == body["tree_size"]
    # Someone else's event, and one that does not exist, look the same: 404.
    assert (
        client.get(
            "/v1/audit/proofs/inclusion", query_string={"seq": 0}, headers=operator.headers
        ).status_code
        == 404
    )
    assert (
        client.get(
            "/v1/audit/proofs/inclusion", query_string={"seq": 10**9}, headers=auditor.headers
        ).status_code
        == 404
    )


def test_inclusion_at_an_explicit_size_and_consistency_between_two_checkpoints(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    first = client.post("/v1/audit/checkpoints", headers=auditor.headers).get_json()
    for _ in range(5):
        _request_contract(client, operator)
    second = client.post("/v1/audit/checkpoints", headers=auditor.headers).get_json()
    m, n = first["tree_size"], second["tree_size"]
    assert n > m
    body = client.get(
        "/v1/audit/proofs/consistency", query_string={"first": m, "second": n}, headers=auditor.headers
    ).get_json()
    assert body["first_root"] == first["root_hash"] and body["second_root"] == second["root_hash"]
    assert merkle.verify_consistency(
        m,
        n,
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        [bytes.fromhex(p) for p in body["proof"]],
    )
    for seq in range(n):
        got = client.get(
            "/v1/audit/proofs/inclusion", query_string={"seq": seq, "tree_size": n}, headers=auditor.headers
        ).get_json()
        assert merkle.verify_inclusion(
            seq,
            n,
            bytes.fromhex(got["leaf_hash"]),
            [bytes.fromhex(p) for p in got["audit_path"]],
            bytes.fromhex(second["root_hash"]),
        )
    bad = client.get(
        "/v1/audit/proofs/consistency", query_string={"first": n, "second": m}, headers=auditor.headers
    )
    assert bad.status_code == 422
    assert [d["field"] for d in bad.get_json()["error"]["details"]] == ["first"]
    too_big = client.get(
        "/v1/audit/proofs/inclusion", query_string={"seq": 0, "tree_size": n + 1000}, headers=auditor.headers
    )
    assert too_big.status_code == 422
    assert [d["field"] for d in too_big.get_json()["error"]["details"]] == ["tree_size"]


def test_export_streams_ndjson_that_verifies_offline(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    _request_contract(client, operator)
    client.post("/v1/audit/checkpoints", headers=auditor.headers)
    latest = client.get("/v1/audit/checkpoint", headers=auditor.headers).get_json()
    response = client.get("/v1/audit/export", headers=auditor.headers)
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    window, records = read_export(lines)
    assert window is None  # the whole log: no window's proof
    report = verify_log(records, [SourcedCheckpoint("trusted", latest["note"])], _jwks_keys(client))
    assert report.intact, report.as_dict()
    assert report.verified_size == latest["tree_size"]
    # The export itself was logged, after the checkpoint: the one event not yet vouched for.
    assert json.loads(json.loads(lines[-1])["entry"])["action"] == "audit.export"
    assert [w.reason.value for w in report.warnings] == ["unverified_tail"]


def test_only_auditors_search_and_export(client: FlaskClient, operator: Party, admin: Party) -> None:
    for path in ("/v1/audit/events", "/v1/audit/export", "/v1/audit/checkpoints"):
        assert client.get(path, headers=operator.headers).status_code == 403
        assert client.get(path, headers=admin.headers).status_code == 403
    assert client.get("/v1/audit/events").status_code == 401


def _window_export(client: FlaskClient, auditor: Party, **query: str) -> tuple[Window, list[str]]:
    response = client.get("/v1/audit/export", query_string=query, headers=auditor.headers)
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = response.get_data(as_text=True).splitlines()
    window, records = read_export(lines)
    assert window is not None
    assert [int(json.loads(line)["seq"]) for line in lines[1:]] == list(range(window.start, window.end))
    list(records)  # every line after the proof is a record
    return window, lines


def _window_of_six_requests(client: FlaskClient, auditor: Party, operator: Party) -> tuple[Window, list[str]]:
    """Six contract requests, and the export of the time from the second to the sixth."""
    for _ in range(6):
        _request_contract(client, operator)
    events = client.get(
        "/v1/audit/events", query_string={"action": "authorization.request"}, headers=auditor.headers
    ).get_json()["events"]
    return _window_export(client, auditor, since=events[1]["time"], until=events[5]["time"])


def _verify_lines(client: FlaskClient, lines: list[str]) -> Report:
    window, records = read_export(lines)
    assert window is not None
    return verify_window(window, records, [], _jwks_keys(client))


def test_a_time_window_exports_only_its_events_and_verifies_on_its_own(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    """A window had been a bare slice of the log, which the verifier, rebuilding the tree from
    seq 0, called tampered (``sequence_gap``): only the whole log could be checked offline."""
    for _ in range(5):
        _request_contract(client, operator)
    client.post("/v1/audit/checkpoints", headers=auditor.headers)
    for _ in range(3):
        _request_contract(client, operator)  # after the last checkpoint: one is signed for the window
    events = client.get(
        "/v1/audit/events", query_string={"action": "authorization.request"}, headers=auditor.headers
    ).get_json()["events"]
    since, until = events[2]["time"], events[6]["time"]
    window, lines = _window_export(client, auditor, since=since, until=until)
    # Its events, and one more on each side (a fence, outside the range): the last one before
    # `since` and the first one at `until`.
    assert (window.start, window.end) == (events[2]["seq"] - 1, events[6]["seq"] + 1)
    report = _verify_lines(client, lines)
    assert report.intact, report.as_dict()
    assert report.window and report.first_seq == window.start and report.events == window.end - window.start
    assert report.verified_size == window.tree_size >= window.end
    latest = client.get("/v1/audit/checkpoint", headers=auditor.headers).get_json()
    assert verify_note(window.checkpoint, _jwks_keys(client)).tree_size == window.tree_size
    assert latest["tree_size"] >= window.tree_size
    # From a time to now, and from the start to a time, prove themselves too.
    for query in ({"since": since}, {"until": until}):
        window, lines = _window_export(client, auditor, **query)
        report = _verify_lines(client, lines)
        assert report.intact and report.verified_size == window.tree_size, (query, report.as_dict())
    assert window.start == 0
    # A window in which nothing happened is an empty range, still placed in a signed tree.
    window, lines = _window_export(client, auditor, since="2999-01-01T00:00:00Z")
    assert window.end == window.tree_size and window.end - window.start == 1 and len(lines) == 2  # a fence
    assert _verify_lines(client, lines).intact
    # So is one between two events: its fences are the events on either side of the gap.
    after = datetime.fromisoformat(events[3]["time"].replace("Z", "+00:00"))
    gap = {
        "since": rfc3339(after + timedelta(microseconds=1)),
        "until": rfc3339(after + timedelta(microseconds=2)),
    }
    window, lines = _window_export(client, auditor, **gap)
    assert (window.start, window.end) == (events[3]["seq"], events[3]["seq"] + 2)
    assert _verify_lines(client, lines).intact


def test_a_window_cut_short_or_reaching_past_its_tree_fails_verification(
    client: FlaskClient, auditor: Party, operator: Party, runtime: Runtime
) -> None:
    """Found in review: a proof rebuilt for a narrower range (with the whole log at hand) verified,
    so events at a window's ends could be dropped; and a window past its tree's size took events
    that were in no tree at all, and a proof one subtree short crashed the verifier."""
    honest, lines = _window_of_six_requests(client, auditor, operator)
    assert _verify_lines(client, lines).intact
    header, *records = lines
    proof = json.loads(header)
    # Both fences dropped, and a proof made for what is left: the subtrees are right, the ends not.
    start, end = honest.start + 1, honest.end - 1
    with runtime.sessions() as session:
        left, right = runtime.audit_tree.range_proof(session, start, end, honest.tree_size)
    narrower = {**proof["window"], "start": start, "end": end, "left": [h.hex() for h in left],
                "right": [h.hex() for h in right]}  # fmt: skip
    report = _verify_lines(client, [json.dumps({"window": narrower}), *records[1:-1]])
    assert [p.reason.value for p in report.problems] == ["window_incomplete", "window_incomplete"]
    assert [p.seq for p in report.problems] == [start, end - 1]
    # Events placed past the tree's size: nothing of theirs is in the signed root.
    checkpoint = verify_note(honest.checkpoint, _jwks_keys(client))
    beyond = {**proof["window"], "start": honest.tree_size, "end": honest.tree_size + 1,
              "left": [checkpoint.root_hash.hex()], "right": []}  # fmt: skip
    forged = json.dumps({"seq": honest.tree_size, "leaf_hash": "00" * 32, "entry": "{}"})
    report = _verify_lines(client, [json.dumps({"window": beyond}), forged])
    assert [p.reason.value for p in report.problems] == ["root_mismatch"]
    assert "malformed" in report.problems[0].message
    # A proof one subtree short on the left: refused, not a crash.
    short = {**proof["window"], "left": proof["window"]["left"][:-1]}
    report = _verify_lines(client, [json.dumps({"window": short}), *records])
    assert [p.reason.value for p in report.problems] == ["root_mismatch"]


def test_a_window_export_changed_anywhere_fails_verification(
    client: FlaskClient, auditor: Party, operator: Party
) -> None:
    _, lines = _window_of_six_requests(client, auditor, operator)
    header, first, *rest = lines

    def reason(changed: list[str]) -> str:
        report = _verify_lines(client, changed)
        assert not report.intact
        return report.first_failure.reason.value  # type: ignore[union-attr]

    # An entry edited and rehashed: its leaf is its own, but the tree is no longer the signed one.
    record = json.loads(first)
    entry = record["entry"].replace('"outcome":"success"', '"outcome":"denied"')
    assert entry != record["entry"]
    forged = {**record, "entry": entry, "leaf_hash": hashlib.sha256(b"\x00" + entry.encode()).hexdigest()}
    assert reason([header, json.dumps(forged), *rest]) == "root_mismatch"
    assert reason([header, json.dumps({**record, "entry": entry}), *rest]) == "leaf_hash_mismatch"
    assert reason([header, *rest]) == "sequence_gap"  # the first event left out
    assert reason([header, first, *rest[:-1]]) == "sequence_gap"  # the last one left out
    proof = json.loads(header)
    left = proof["window"]["left"]
    proof["window"]["left"] = ["00" * 32, *left[1:]]
    assert reason([json.dumps(proof), first, *rest]) == "root_mismatch"  # a subtree beside it swapped
    # A proof that does not fit its range (a subtree taken away), or a range its events do not fill.
    short = json.loads(header)
    short["window"]["right"] = short["window"]["right"][:-1]
    report = _verify_lines(client, [json.dumps(short), first, *rest])
    assert [p.reason.value for p in report.problems] == ["root_mismatch"]
    assert "malformed" in report.problems[0].message
    moved = json.loads(header)
    moved["window"]["start"] += 1
    fits = (moved["window"]["start"]).bit_count() == len(moved["window"]["left"])
    assert reason([json.dumps(moved), first, *rest]) == ("sequence_gap" if fits else "root_mismatch")
    note = proof["window"]["checkpoint"]
    unsigned = json.loads(header)
    unsigned["window"]["checkpoint"] = note.replace(note.rsplit(" ", 1)[-1], "AAAA")
    assert reason([json.dumps(unsigned), first, *rest]) == "bad_checkpoint_signature"
    # A proof claiming a size its checkpoint does not sign.
    grown = json.loads(header)
    grown["window"]["tree_size"] += 1
    report = _verify_lines(client, [json.dumps(grown), first, *rest])
    assert report.first_failure is not None
    assert report.first_failure.reason.value == "checkpoint_mismatch"
    signed = proof["window"]["tree_size"]
    assert f"is for size {signed + 1}, its checkpoint signs size {signed}" in report.first_failure.message


def test_a_checkpoint_whose_file_copy_fails_is_a_503_naming_it_and_copied_when_asked_again(
    client: FlaskClient, auditor: Party, runtime: Runtime
) -> None:
    """It had been a 500 (an unhandled IsADirectoryError), and a checkpoint re-signed with nothing
    added since was never copied: the file stayed without it."""
    from audit.checkpoints import CheckpointCopyFailed, latest_checkpoint
    from sandbox.services import audit_log

    path = runtime.settings.checkpoints_file
    path.mkdir(parents=True)  # the copy cannot be written: a folder where the file goes
    failed = client.post("/v1/audit/checkpoints", headers=auditor.headers)
    assert failed.status_code == 503
    error = failed.get_json()["error"]
    assert error["code"] == "checkpoint_copy_failed"
    assert "is signed, but its copy to the checkpoint file failed (Is a directory)" in error["message"]
    assert str(path) not in error["message"]  # the server's paths stay in its log
    with runtime.sessions() as session:
        stored = latest_checkpoint(session)
    assert stored is not None and f"of size {stored.tree_size} " in error["message"]
    # The service, asked again: the API's failure event is new since, so a new checkpoint, not copied.
    with pytest.raises(CheckpointCopyFailed):
        audit_log.sign_if_new(runtime)
    with runtime.sessions() as session:
        newer = latest_checkpoint(session)
    assert newer is not None and newer.tree_size == stored.tree_size + 1
    path.rmdir()
    view, created = audit_log.sign_if_new(runtime)  # nothing added since: the same one, copied now
    assert not created and view["tree_size"] == newer.tree_size
    copied = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [c["note"] for c in copied] == [newer.note]
    assert audit_log.sign_if_new(runtime) == (view, False)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1  # once, not at every ask
