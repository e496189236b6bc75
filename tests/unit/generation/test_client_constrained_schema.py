"""constrained_schema: the schema handed to xgrammar is bounded to max_tokens and never looser."""

from __future__ import annotations

import re

import pytest

from labpipe.llm.hf_client import MAX_TEXT, PRINTABLE, _worst_bytes, constrained_schema

QA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 3},
        "answer": {"type": "string", "maxLength": 20},
        "kind": {"type": "string", "enum": ["open", "closed"]},
        "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "nested": {"$ref": "#/$defs/Note"},
    },
    "required": ["question", "answer"],
    "$defs": {"Note": {"type": "object", "properties": {"text": {"type": "string"}}}},
}


def _chars(pattern: str) -> tuple[int, int]:
    bounds = re.findall(r"\{(\d+),(\d+)\}", pattern)
    return sum(int(lo) for lo, _ in bounds), sum(int(hi) for _, hi in bounds)


@pytest.mark.parametrize("max_tokens", [320, 1024, 4096])
def test_worst_case_fits_max_tokens(max_tokens):
    safe = constrained_schema(QA, max_tokens)
    assert _worst_bytes(safe, safe) <= max_tokens - 1
    props = safe["properties"]
    assert props["question"]["pattern"].startswith("^" + PRINTABLE)
    assert _chars(props["question"]["pattern"])[0] == 3  # minLength kept
    assert _chars(props["answer"]["pattern"])[1] <= 20  # the schema's own bound is never loosened
    assert _chars(props["question"]["pattern"])[1] <= MAX_TEXT
    assert props["kind"] == QA["properties"]["kind"] and props["code"] == QA["properties"]["code"]
    assert props["score"]["minimum"] < 0 < props["score"]["maximum"]
    assert props["tags"]["maxItems"] <= 8
    assert "pattern" in safe["$defs"]["Note"]["properties"]["text"]
    assert QA["properties"]["question"] == {"type": "string", "minLength": 3}  # input untouched


def test_larger_budgets_allow_longer_strings():
    short = _chars(constrained_schema(QA, 128)["properties"]["question"]["pattern"])[1]
    long = _chars(constrained_schema(QA, 1024)["properties"]["question"]["pattern"])[1]
    assert 3 <= short < long


def test_patterns_use_chunks_xgrammar_can_compile():
    pattern = constrained_schema({"type": "string"}, 4096)["pattern"]
    assert all(int(hi) <= 128 for _, hi in re.findall(r"\{(\d+),(\d+)\}", pattern))
    assert _chars(pattern)[1] == MAX_TEXT


def test_an_impossible_budget_still_bounds_every_free_text_string(caplog, monkeypatch):
    from labpipe.llm import hf_client

    monkeypatch.setattr(hf_client, "_UNBOUNDED", {})  # said once per process: this test's own first time
    safe = constrained_schema(QA, 16)
    assert "cannot be bounded" in caplog.text
    assert _chars(safe["properties"]["question"]["pattern"])[1] >= 3


def test_caller_patterns_count_towards_the_budget():
    from labpipe.llm.hf_client import _pattern_bytes

    assert _pattern_bytes("^[A-Z]{2}$") == 2 + len("^[A-Z]{2}$") + 2
    assert _pattern_bytes("^[a-z]+$") >= 10**6
    assert _pattern_bytes("^.{0,5}$") == 2 + 6 * (len("^.{0,5}$") + 5)


def test_the_unbounded_warning_is_said_once_then_counted(caplog, monkeypatch):
    """Issue 20, item 9: one judge warning was printed 36 times (once per request)."""
    from labpipe.llm import hf_client

    monkeypatch.setattr(hf_client, "_UNBOUNDED", {})
    monkeypatch.setattr("atexit.register", lambda fn: None)
    for _ in range(36):
        constrained_schema(QA, 16)
    assert caplog.text.count("cannot be bounded to 16 tokens") == 1
    hf_client._report_unbounded()
    assert "schema cannot be bounded to 16 tokens: 36 requests in all" in caplog.text
