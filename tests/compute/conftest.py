"""Fixtures for the compute runtime: small limits so failures end fast, rows with a victim in them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.compute.runner import Limits
from tests.compute.factories import CountingPace

# A copy of ../shared/security/escape_corpus.json, so a clean checkout runs it too; a test keeps
# the copy equal to the shared file whenever that one is present.
CORPUS = Path(__file__).with_name("escape_corpus.json")
SHARED_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "security" / "escape_corpus.json"
VICTIM_SSN = "999-00-1234"
VICTIM_INCOME = 123456.78


@pytest.fixture
def limits() -> Limits:
    """Tight enough that an endless loop or a memory bomb ends in a couple of seconds."""
    return Limits(cpu_seconds=2, wall_seconds=6.0, memory_bytes=256 << 20)


@pytest.fixture
def pace() -> CountingPace:
    """A private release's clock that keeps the timetable without waiting it out."""
    return CountingPace()


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    """Firms with a tax record, plus one person whose income must never come out."""
    firms = [
        {"ssn": f"100-00-{i:04d}", "credit_code": f"C{i % 40:03d}", "district": d, "income": 1000.0 + i}
        for i, d in enumerate(["历下区", "市中区", "槐荫区", "天桥区"] * 50)
    ]
    return [*firms, {"ssn": VICTIM_SSN, "credit_code": "C999", "district": "历下区", "income": VICTIM_INCOME}]


def load_corpus() -> list[dict[str, str]]:
    """The shared escape corpus (28 payloads)."""
    payloads: list[dict[str, str]] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return payloads


def text_of(value: object) -> str:
    """Everything an outcome could show, as one string to search for leaks."""
    return json.dumps(value, ensure_ascii=False, default=repr) + repr(value)
