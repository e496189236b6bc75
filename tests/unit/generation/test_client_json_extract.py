"""Tolerant JSON extraction and the schema check applied to every structured reply."""

from __future__ import annotations

import pytest

from labpipe.llm.json_extract import (
    NotJSON,
    check_schema,
    extract_json,
    parse_reply,
    schema_from_instruction,
    schema_instruction,
)

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "maximum": 3}}, "required": ["score"]}


@pytest.mark.parametrize(
    "text",
    [
        '{"score": 2}',
        '  {"score": 2}\n',
        'Here you go:\n```json\n{"score": 2}\n```\nAnything else?',
        '```\n{"score": 2}\n```',
        'Sure! {"score": 2} Hope that helps.',
        'The set {a, b} is not JSON, but this is: {"score": 2}',
    ],
)
def test_extracts_json_wherever_it_is(text):
    assert extract_json(text) == {"score": 2}


@pytest.mark.parametrize("text", ["", "no json here", '{"score": 2', "```json\n{oops}\n```"])
def test_no_json_raises(text):
    with pytest.raises(NotJSON):
        extract_json(text)


def test_schema_check_names_the_field():
    assert check_schema({"score": 2}, SCHEMA) is None
    assert "score" in check_schema({"score": 9}, SCHEMA)
    assert "(root)" in check_schema({}, SCHEMA)


def test_parse_reply_reports_why():
    assert parse_reply('{"score": 1}', SCHEMA) == ({"score": 1}, None)
    value, reason = parse_reply('{"score": "high"}', SCHEMA)
    assert value is None and reason.startswith("schema violation at score")
    assert parse_reply("nope", SCHEMA)[1].startswith("no JSON")


def test_schema_instruction_round_trips():
    prompt = "Rate this answer.\n\n" + schema_instruction(SCHEMA)
    assert schema_from_instruction(prompt) == SCHEMA
    assert schema_from_instruction("Rate this answer.") is None
