"""``sandbox audit verify-inclusion``: a sealed answer's event in the log under a signed checkpoint,
checked from files alone; exit 0 included, 1 something does not verify, 2 an unusable input."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from authz.permissions import Role
from core import keys, seals
from core.clock import utcnow
from core.db import transaction
from sandbox.cli import main
from sandbox.runtime import Runtime
from tests.api.conftest import Party, make_account, make_operator
from tests.engine import rows
from tests.factories import make_consent, make_contract

Json = dict[str, Any]


@dataclass
class Evidence:
    """What the API gave a bank: a sealed answer, its event's proof, the checkpoint, the keys."""

    answer: Json
    proof: Json
    checkpoint: Json
    jwks: Json
    folder: Path

    def write(self, name: str, value: Json | str) -> Path:
        path = self.folder / name
        path.write_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), "utf-8")
        return path

    def args(self, **replaced: Json | str) -> list[str]:
        """The command with every input written to a file, ``replaced`` ones instead of the API's."""
        files = {
            "proof": replaced.get("proof", self.proof),
            "checkpoint": replaced.get("checkpoint", self.checkpoint),
            "jwks": replaced.get("jwks", self.jwks),
            "seal": replaced.get("seal", self.answer),
        }
        paths = {name: str(self.write(f"{name}.json", value)) for name, value in files.items()}
        return [
            paths["proof"],
            "--checkpoint",
            paths["checkpoint"],
            "--jwks",
            paths["jwks"],
            "--seal",
            paths["seal"],
        ]


def _run(args: list[str], stdin: str | None = None) -> tuple[int, str]:
    # No home, no database, no server: the files are all it has.
    result = CliRunner().invoke(
        main,
        ["audit", "verify-inclusion", *args],
        input=stdin,
        env={"SANDBOX_HOME": "/nonexistent", "SANDBOX_DATABASE_URL": "sqlite:////nonexistent/x.sqlite"},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _verify(runtime: Runtime, client: FlaskClient, operator: Party, threshold: int) -> Json:
    with transaction(runtime.sessions) as session:
        contract = make_contract(session, operator_id=operator.id, now=utcnow() - timedelta(minutes=1))
        make_consent(
            session, subject_id=rows.FIRM, operator_id=operator.id, now=utcnow() - timedelta(minutes=1)
        )
    body = {
        "authorization_id": contract.id,
        "template": "tax_paid_at_least",
        "subject": rows.FIRM,
        "params": {"threshold": threshold, "year": 2024},
    }
    response = client.post("/v1/verify", json=body, headers=operator.headers)
    assert response.status_code == 200, response.get_json()
    answer: Json = response.get_json()
    return answer


def _fetch(client: FlaskClient, path: str, party: Party | None = None, **query: int) -> Json:
    response = client.get(path, query_string=query, headers=party.headers if party else {})
    assert response.status_code == 200, response.get_json()
    body: Json = response.get_json()
    return body


@pytest.fixture
def operator(runtime: Runtime, client: FlaskClient) -> Party:
    rows.write(runtime.stores, runtime.catalog, {"enterprise_tax": [rows.tax(rows.FIRM, 2024, 612_345.67)]})
    return make_operator(runtime, client, "齐鲁普惠贷科技有限公司", "913701023C5XXXX13C")


@pytest.fixture
def auditor(runtime: Runtime, client: FlaskClient) -> Party:
    return make_account(runtime, client, Role.AUDITOR, "auditor1")


@pytest.fixture
def evidence(
    client: FlaskClient, operator: Party, auditor: Party, runtime: Runtime, tmp_path: Path
) -> Evidence:
    """As the README does it: the answer, then (once the bureau has signed a checkpoint past it) the
    latest checkpoint, the proof at its size, and the published keys."""
    answer = _verify(runtime, client, operator, 500_000)
    assert client.post("/v1/audit/checkpoints", headers=auditor.headers).status_code == 201
    checkpoint = _fetch(client, "/v1/audit/checkpoint", operator)
    proof = _fetch(
        client,
        "/v1/audit/proofs/inclusion",
        operator,
        seq=answer["audit_seq"],
        tree_size=checkpoint["tree_size"],
    )
    return Evidence(answer, proof, checkpoint, _fetch(client, "/.well-known/jwks.json"), tmp_path)


def test_a_sealed_answers_event_is_included_under_the_signed_checkpoint(evidence: Evidence) -> None:
    code, output = _run(evidence.args())
    assert code == 0, output
    seq, size = evidence.answer["audit_seq"], evidence.checkpoint["tree_size"]
    assert f"included: audit event {seq} " in output
    assert f"in the checkpoint of size {size} signed by key {evidence.checkpoint['key_id']}" in output
    assert f"sealed answer: its seal (key {evidence.checkpoint['key_id']}) names audit event {seq}" in output


def test_the_proof_from_stdin_with_the_checkpoint_it_holds_and_no_seal(evidence: Evidence) -> None:
    jwks = str(evidence.write("jwks.json", evidence.jwks))
    code, output = _run(["-", "--jwks", jwks], stdin=json.dumps(evidence.proof))
    assert code == 0, output
    assert f"of size {evidence.checkpoint['tree_size']}" in output and "sealed answer" not in output
    note = str(evidence.write("note.txt", evidence.checkpoint["note"]))  # the bare signed note
    code, output = _run([str(evidence.write("p.json", evidence.proof)), "--checkpoint", note, "--jwks", jwks])
    assert code == 0, output


def _flip_hex(text: str, at: int) -> str:
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]


def _flip_base64(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def _note_line(note: str, index: int, change: Callable[[str], str]) -> str:
    lines = note.split("\n")
    lines[index] = change(lines[index])
    return "\n".join(lines)


def _leaf_hash(e: Evidence) -> None:
    e.proof["leaf_hash"] = _flip_hex(e.proof["leaf_hash"], 10)


def _sibling(e: Evidence) -> None:
    e.proof["audit_path"][-1] = _flip_hex(e.proof["audit_path"][-1], 31)


def _entry(e: Evidence) -> None:
    e.proof["entry"] = e.proof["entry"].replace('"success"', '"succes5"')


def _proof_root(e: Evidence) -> None:
    e.proof["root_hash"] = _flip_hex(e.proof["root_hash"], 0)


def _checkpoint_root_in_note(e: Evidence) -> None:
    e.checkpoint["note"] = _note_line(e.checkpoint["note"], 2, lambda line: _flip_base64(line, 20))


def _checkpoint_root_shown(e: Evidence) -> None:
    e.checkpoint["root_hash"] = _flip_hex(e.checkpoint["root_hash"], 63)


def _checkpoint_signature(e: Evidence) -> None:
    e.checkpoint["note"] = _note_line(
        e.checkpoint["note"], -2, lambda line: _flip_base64(line, len(line) // 2)
    )


def _checkpoint_size_shown(e: Evidence) -> None:
    e.checkpoint["tree_size"] += 1


def _checkpoint_in_proof(e: Evidence) -> None:
    e.proof["checkpoint"]["root_hash"] = _flip_hex(e.proof["checkpoint"]["root_hash"], 5)


def _seal_payload(e: Evidence) -> None:
    head, body, signature = e.answer["seal"].split(".")
    e.answer["seal"] = f"{head}.{_flip_base64(body, len(body) // 2)}.{signature}"


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (_leaf_hash, "does not hash to its leaf_hash"),
        (_sibling, "audit path does not lead from leaf"),
        (_entry, "does not hash to its leaf_hash"),
        (_proof_root, "root_hash is not the root the checkpoint signs"),
        (_checkpoint_root_in_note, "the checkpoint does not verify: the signature does not verify"),
        (_checkpoint_root_shown, "the checkpoint's 'root_hash' differs from its signed note"),
        (_checkpoint_signature, "the checkpoint does not verify: the signature does not verify"),
        (_checkpoint_size_shown, "the checkpoint's 'tree_size' differs from its signed note"),
        (_checkpoint_in_proof, "the checkpoint's 'root_hash' differs"),
        (_seal_payload, "the seal: the signature does not match"),
    ],
)
def test_one_changed_byte_anywhere_exits_1(
    evidence: Evidence, edit: Callable[[Evidence], None], said: str
) -> None:
    edited = copy.deepcopy(evidence)
    edit(edited)
    code, output = _run(edited.args(proof=edited.proof, checkpoint=edited.checkpoint, seal=edited.answer))
    assert code == 1, output
    assert output.startswith("INVALID: ") and said in output, output


def test_the_seal_of_another_answer_does_not_match_the_proof_exit_1(
    evidence: Evidence, runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    other = _verify(runtime, client, operator, 100_000)
    assert other["audit_seq"] != evidence.answer["audit_seq"]
    code, output = _run(evidence.args(seal=other))
    assert code == 1, output
    assert f"the seal names audit event {other['audit_seq']}, the proof is of event" in output
    # The bare JWS of it, too.
    code, output = _run(evidence.args(seal=other["seal"]))
    assert code == 1 and "the seal names audit event" in output, output


def test_another_key_set_does_not_vouch_for_the_checkpoint_exit_1(evidence: Evidence) -> None:
    foreign = {"keys": [keys.generate().jwk()]}
    code, output = _run(evidence.args(jwks=foreign))
    assert code == 1 and "which the key set does not hold" in output, output
    code, output = _run(evidence.args(checkpoint=evidence.checkpoint["note"], jwks=foreign))
    assert code == 1 and "not signed by a trusted key" in output, output
    # The key_id shown beside the note changed to a key the set holds: that key did not sign it.
    other = keys.generate().jwk()
    both = {"keys": [*evidence.jwks["keys"], other]}
    code, output = _run(evidence.args(checkpoint={**evidence.checkpoint, "key_id": other["kid"]}, jwks=both))
    assert code == 1 and "the checkpoint does not verify: not signed by a trusted key" in output, output


def test_a_proof_for_another_size_than_the_checkpoint_exits_2_saying_which(
    evidence: Evidence, client: FlaskClient, operator: Party, auditor: Party, runtime: Runtime
) -> None:
    _verify(runtime, client, operator, 10_000)
    assert client.post("/v1/audit/checkpoints", headers=auditor.headers).status_code == 201
    later = _fetch(client, "/v1/audit/checkpoint", operator)
    assert later["tree_size"] > evidence.checkpoint["tree_size"]
    code, output = _run(evidence.args(checkpoint=later))
    assert code == 2, output
    expected = (
        f"error: the proof is for a tree of {evidence.proof['tree_size']} events, "
        f"the checkpoint signs {later['tree_size']}"
    )
    assert output.startswith(expected) and f"tree_size={later['tree_size']}" in output, output


def _without(value: Json, name: str) -> Json:
    return {k: v for k, v in value.items() if k != name}


MALFORMED: list[tuple[str, Callable[[Evidence], dict[str, Json | str]], str]] = [
    ("proof not JSON", lambda e: {"proof": "{not json"}, "proof.json is not JSON"),
    ("proof a list", lambda e: {"proof": "[1, 2]"}, "is not an inclusion proof"),
    ("proof nested deep", lambda e: {"proof": "[" * 100_000 + "]" * 100_000}, "proof.json is not JSON"),
    ("proof no entry", lambda e: {"proof": _without(e.proof, "entry")}, "'entry'"),
    ("proof index text", lambda e: {"proof": {**e.proof, "leaf_index": "3"}}, "'leaf_index'"),
    ("proof index true", lambda e: {"proof": {**e.proof, "leaf_index": True}}, "'leaf_index'"),
    ("proof index past size", lambda e: {"proof": {**e.proof, "leaf_index": 10**6}}, "'leaf_index'"),
    ("proof path not hex", lambda e: {"proof": {**e.proof, "audit_path": ["zz"]}}, "'audit_path'"),
    (
        "proof leaf upper",
        lambda e: {"proof": {**e.proof, "leaf_hash": e.proof["leaf_hash"].upper()}},
        "'leaf_hash'",
    ),
    (
        "proof is an API error",
        lambda e: {"proof": {"error": {"code": "not_found", "message": "no audit event 7"}}},
        "holds an error of the API, not what was asked for (not_found: no audit event 7)",
    ),
    ("checkpoint no note", lambda e: {"checkpoint": _without(e.checkpoint, "note")}, "without a 'note'"),
    ("checkpoint not a note", lambda e: {"checkpoint": "hello\n"}, "is not a signed checkpoint"),
    ("checkpoint not JSON", lambda e: {"checkpoint": "{oops"}, "neither a signed note nor checkpoint JSON"),
    ("key set empty", lambda e: {"jwks": {"keys": []}}, "holds no Ed25519 key"),
    ("key set not JSON", lambda e: {"jwks": "nope"}, "no key set: the key set is not JSON"),
    ("key set bad key", lambda e: {"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519"}]}}, "not a JWKS"),
    ("seal not a seal", lambda e: {"seal": "hello"}, "not a compact JWS"),
    ("seal JSON without one", lambda e: {"seal": {"result": True}}, "the JSON holds no 'seal'"),
]


def test_an_input_that_cannot_be_used_exits_2_with_one_error_line(evidence: Evidence) -> None:
    for case, inputs, said in MALFORMED:  # one home for all: each case changes only its files
        code, output = _run(evidence.args(**inputs(evidence)))
        assert code == 2, (case, output)
        assert output.startswith("error: ") and output.count("\n") == 1 and said in output, (case, output)


def test_files_missing_stdin_twice_and_no_checkpoint_anywhere_exit_2(evidence: Evidence) -> None:
    args = evidence.args()
    missing = str(evidence.folder / "missing.json")
    for index, what in ((0, "the inclusion proof"), (2, "the checkpoint"), (6, "the sealed answer")):
        changed = [*args]
        changed[index] = missing
        code, output = _run(changed)
        assert code == 2 and f"error: cannot read {what} {missing}: No such file" in output, output
    changed = [*args]
    changed[4] = missing
    code, output = _run(changed)
    assert code == 2 and "error: no key set: cannot read the key set" in output, output
    code, output = _run(["-", "--checkpoint", "-", "--jwks", args[4]], stdin="{}")
    assert code == 2 and "only one input can be read from standard input" in output, output
    proof = str(evidence.write("bare.json", {**evidence.proof, "checkpoint": None}))
    code, output = _run([proof, "--jwks", args[4]])
    assert code == 2 and "the proof holds no checkpoint" in output and "--checkpoint" in output, output
    code, output = _run([args[0]])
    assert code == 2 and "--jwks" in output, output


def test_a_seal_that_names_no_audit_event_exits_2(evidence: Evidence) -> None:
    """Every seal the bureau issues names its event; one without (some other signed thing) cannot
    be matched to a proof, which says nothing of the proof itself."""
    key = keys.generate()
    sealed = seals.seal({"result": True}, key)
    jwks = {"keys": [*evidence.jwks["keys"], key.jwk()]}
    code, output = _run(evidence.args(seal=sealed, jwks=jwks))
    assert code == 2 and "the seal names no audit event" in output, output
