"""Every payload of the shared escape corpus, run as if a reviewer had approved it.

Each payload goes two ways. As a job: submitted (``compile_program``), and if accepted, released
the default way (private). And raw, straight into a fresh child with no submission check at all,
so the child's own checks and the process wall are tested on their own. Either way it must end
failed or harmless: no file read or written, no import, no frame, globals or builtins, no
socket, no rows, no hang — and the next job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.compute.compile import CompiledProgram, compile_program
from sandbox.compute.errors import ProgramInvalid, ReleaseRefused
from sandbox.compute.release import Release, release_private
from sandbox.compute.runner import Limits, RunOutcome, RunStatus, run_program
from sandbox.compute.shape import check_result
from tests.compute.conftest import CORPUS, SHARED_CORPUS, VICTIM_INCOME, load_corpus, text_of
from tests.compute.factories import CountingPace

PAYLOADS = load_corpus()
OUT = Path("/tmp/research/rp_escape/out")
# How the raw run of each payload ends (class), when it is not refused by the child's compile.
RAW_ENDINGS = {
    "P19": "ResultRefused",  # sorted() of a dict is a list: never released
    "P41": None,  # a number: fine in shape; default release refuses it (no OUTPUT_BOUNDS)
    "P47": "MemoryError",  # RLIMIT_AS
    "P49": "MemoryError",
}
# What must never show in anything a run returns.
FORBIDDEN_TEXT = ("root:", "/bin/", "uid=", "__builtins__", "f_globals", "999-00-1234", "listdir")


def _assert_harmless(outcome: RunOutcome, limits: Limits, canary: str) -> None:
    assert outcome.duration_seconds < limits.wall_seconds + 2
    shown = text_of(outcome.to_record()) + text_of(outcome.result)
    for text in (*FORBIDDEN_TEXT, canary):
        assert text not in shown
    if outcome.status is RunStatus.SUCCEEDED:
        assert check_result(outcome.result) == outcome.result


def _next_job_runs(limits: Limits) -> None:
    follow_up = run_program("result = stats.sum([r['x'] for r in data])", [{"x": 2}, {"x": 3}], limits=limits)
    assert follow_up.status is RunStatus.SUCCEEDED and follow_up.result == 5


def _submit(source: str) -> CompiledProgram | ProgramInvalid:
    try:
        return compile_program(source)
    except ProgramInvalid as refused:
        return refused


def _release_by_default(
    program: CompiledProgram, rows: list[dict[str, Any]], limits: Limits
) -> Release | ReleaseRefused:
    try:
        return release_private(
            program, rows, {}, epsilon=1.0, partitions=4, limits=limits, pace=CountingPace()
        )
    except ReleaseRefused as refused:
        return refused


@pytest.fixture
def canary(tmp_path: Path) -> str:
    """A file with a secret in it; no payload may bring the secret back."""
    secret = "canary-7d1f0e"
    (tmp_path / "canary.txt").write_text(secret, encoding="utf-8")
    return secret


def test_corpus_copy_matches_the_shared_corpus() -> None:
    if not SHARED_CORPUS.exists():
        pytest.skip("../shared is not checked out here")
    assert CORPUS.read_bytes() == SHARED_CORPUS.read_bytes()
    assert len(PAYLOADS) == 28


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p["id"] for p in PAYLOADS])
def test_escape_payload_is_contained(
    payload: dict[str, str], rows: list[dict[str, Any]], limits: Limits, canary: str
) -> None:
    source = payload["source"]

    raw = run_program(source, rows, {}, limits=limits)
    expected = RAW_ENDINGS.get(payload["id"], "ProgramInvalid")
    assert raw.error_class == expected, raw
    assert raw.status is (RunStatus.SUCCEEDED if expected is None else RunStatus.FAILED)
    _assert_harmless(raw, limits, canary)

    submitted = _submit(source)
    if isinstance(submitted, ProgramInvalid):
        assert submitted.details and all(isinstance(p["line"], int | None) for p in submitted.details)
        assert expected == "ProgramInvalid"
    else:
        assert expected != "ProgramInvalid"
        released = _release_by_default(submitted, rows, limits)
        if isinstance(released, ReleaseRefused):
            assert released.code == "release_refused"
        else:
            assert released.status is not RunStatus.SUCCEEDED
            assert released.value != VICTIM_INCOME
            for run in released.runs:
                _assert_harmless(run, limits, canary)

    assert not any(OUT.glob("pwn_*")) if OUT.exists() else True
    _next_job_runs(limits)
