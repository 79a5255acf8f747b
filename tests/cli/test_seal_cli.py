"""``sandbox seal verify``: a response or bare seal, a key-set file; exit 0 valid, 1 changed, 2 usage."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from core import keys, seals
from sandbox.cli import main

ANSWER = {"result": True, "template": "enterprise_active", "subject": "913701023C5XXXX13C", "job_id": "j1"}


def _files(tmp_path: Path, response: dict[str, object] | str) -> tuple[Path, Path, keys.SigningKey]:
    key = keys.generate()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    answer = tmp_path / "answer.json"
    answer.write_text(response if isinstance(response, str) else json.dumps(response, ensure_ascii=False))
    return answer, jwks, key


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["seal", "verify", *args], input=stdin, env={"SANDBOX_HOME": "/nonexistent"}
    )
    return result.exit_code, result.output


def test_a_response_verifies_offline_with_a_key_set_file(tmp_path: Path) -> None:
    key = keys.generate()
    response = {**ANSWER, "seal": seals.seal(ANSWER, key)}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(response))
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 0, output
    assert "seal OK" in output and key.kid in output and '"result": true' in output
    bare_code, _ = _run("-", "--jwks", str(jwks), stdin=response["seal"])
    assert bare_code == 0


def test_a_response_edited_after_sealing_is_caught(tmp_path: Path) -> None:
    key = keys.generate()
    response = {**ANSWER, "seal": seals.seal({**ANSWER, "result": False}, key)}
    answer, jwks, _ = _files(tmp_path, "")
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    answer.write_text(json.dumps(response))
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 1 and "'result' differs" in output


def test_a_value_shown_as_another_json_type_is_caught_and_unsealed_fields_are_named(tmp_path: Path) -> None:
    """Found in a sweep: a sealed ``false`` shown as ``0`` passed (Python's ``0 == False``), and
    a field added beside the sealed ones passed without a word."""
    key = keys.generate()
    sealed = {**ANSWER, "result": False, "score": 1, "params": {"year": 2024, "threshold": 5}}
    answer, jwks, _ = _files(tmp_path, "")
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    token = seals.seal(sealed, key)
    for name, shown in (
        ("result", 0),
        ("result", None),
        ("score", True),
        ("score", "1"),
        ("params", {"year": "2024", "threshold": 5}),
        ("params", {"year": 2024}),
    ):
        answer.write_text(json.dumps({**sealed, name: shown, "seal": token}))
        code, output = _run(str(answer), "--jwks", str(jwks))
        assert code == 1 and f"'{name}' differs" in output, (name, shown, output)
    # The same values, keys in another order, 1 printed as 1.0 (JSON has one number type, and
    # JavaScript's JSON.stringify prints 1.0 as 1): the same answer.
    same = {**sealed, "score": 1.0, "params": {"threshold": 5.0, "year": 2024}}
    answer.write_text(json.dumps({**same, "seal": token}))
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 0 and "not sealed" not in output, output
    answer.write_text(json.dumps({**sealed, "verdict": "APPROVED", "seal": token}))
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 0 and "not sealed, so not vouched for: the response's verdict" in output, output


def test_one_changed_byte_of_the_seal_fails(tmp_path: Path) -> None:
    key = keys.generate()
    token = seals.seal(ANSWER, key)
    head, body, signature = token.split(".")
    middle = len(body) // 2
    changed = body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]
    answer, jwks, _ = _files(tmp_path, f"{head}.{changed}.{signature}")
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 1 and "seal INVALID" in output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    code, output = _run(str(tmp_path / "missing.json"), "--jwks", str(tmp_path / "jwks.json"))
    assert code == 2, output
    answer = tmp_path / "a.json"
    answer.write_text("x.y.z")
    code, output = _run(str(answer))  # no --jwks and no home to read keys from
    assert code == 2 and "--jwks" in output
    # A --jwks that is not a key set (or cannot be read or fetched) says nothing of the seal: a
    # usage error, as a key file that is no key is for `audit verify` (it had been "seal INVALID").
    code, output = _run(str(answer), "--jwks", str(answer))
    assert code == 2 and "no key set" in output
    code, output = _run(str(answer), "--jwks", "http://127.0.0.1:1/jwks.json")
    assert code == 2 and "no key set" in output


def test_a_key_set_that_is_no_key_set_is_a_usage_error_whatever_its_form(tmp_path: Path) -> None:
    """Found by a sweep: a deeply nested key set, a malformed URL and an answer that is no HTTP were
    tracebacks; a JSON object without 'keys' was "seal INVALID" (exit 1), as if the seal were bad."""
    import socket
    import threading

    key = keys.generate()
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({**ANSWER, "seal": seals.seal(ANSWER, key)}))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def not_http() -> None:  # one connection: a URL with a space in it is refused before any
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    server = threading.Thread(target=not_http, daemon=True)
    server.start()
    sources = []
    texts = [
        "{}",
        '{"keys": null}',
        "[" * 100_000 + "]" * 100_000,
        '{"keys": {}}',
        '{"keys": [' + "9" * 5000 + "]}",
    ]
    for index, text in enumerate(texts):
        path = tmp_path / f"jwks-{index}.json"
        path.write_text(text)
        sources.append(str(path))
    sources += ["http://127.0.0.1:abc/", "http://[::1/", f"http://127.0.0.1:{port}/jwks.json"]
    sources += [f"http://127.0.0.1:{port}/jwks.json x"]
    for source in sources:
        result = CliRunner().invoke(main, ["seal", "verify", str(answer), "--jwks", source])
        assert result.exit_code == 2, (source, result.output, result.exception)
        assert isinstance(result.exception, SystemExit) and "no key set" in result.output, source
    server.join(timeout=10)
    listener.close()


def test_an_answer_nested_too_deeply_is_invalid_and_one_with_a_bom_verifies(tmp_path: Path) -> None:
    key = keys.generate()
    seal = seals.seal(ANSWER, key)
    answer, jwks, _ = _files(tmp_path, "")
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    answer.write_text('{"seal": "' + seal + '", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 1 and "neither a compact JWS nor JSON" in output and "Traceback" not in output
    answer.write_text('{"seal": "' + seal + '", "x": ' + "9" * 5000 + "}")  # past Python's 4,300 digits
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 1 and "neither a compact JWS nor JSON" in output and "Traceback" not in output
    answer.write_text("\ufeff" + json.dumps({**ANSWER, "seal": seal}), encoding="utf-8")
    code, output = _run(str(answer), "--jwks", str(jwks))
    assert code == 0 and "seal OK" in output, output
