"""Training data: row validation with file:line, loss masks that are what they claim, length policy, replay."""

from __future__ import annotations

import json

import pytest

from labpipe.errors import UserError
from labpipe.training import data

CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
    {"role": "user", "content": "And of Spain?"},
    {"role": "assistant", "content": "Madrid."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _trained_text(tokenizer, ids, labels):
    """The labelled tokens, decoded run by run (a gap between runs is shown as |)."""
    runs, current = [], []
    for tok, lbl in zip(ids, labels, strict=True):
        if lbl == data.IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            assert lbl == tok
            current.append(tok)
    if current:
        runs.append(current)
    return "|".join(tokenizer.decode(r) for r in runs)


def test_assistant_only_mask_covers_exactly_the_assistant_turns(tokenizer):
    ids, labels = data.tokenize(tokenizer, CONVO, unmask_user=False)
    assert _trained_text(tokenizer, ids, labels) == "Paris is the capital of France.<|end|>|Madrid.<|end|>"


def test_unmask_user_trains_everything_after_the_system_turn(tokenizer):
    ids, labels = data.tokenize(tokenizer, CONVO, unmask_user=True)
    text = tokenizer.apply_chat_template(CONVO, tokenize=False)
    system = tokenizer.apply_chat_template(CONVO[:1], tokenize=False)
    assert _trained_text(tokenizer, ids, labels) == text[len(system) :]
    assert "Be brief." not in _trained_text(tokenizer, ids, labels)
    assert "What is the capital of France?" in _trained_text(tokenizer, ids, labels)


def test_unmask_user_without_system_trains_every_token(tokenizer):
    ids, labels = data.tokenize(tokenizer, CONVO[1:], unmask_user=True)
    assert labels == ids


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_malformed_rows_are_reported_with_file_and_line(tmp_path):
    good = json.dumps({"messages": CONVO[1:3]})
    path = _write(
        tmp_path / "d.jsonl",
        [
            good,
            "{not json",
            json.dumps({"messages": []}),
            json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
            json.dumps({"messages": [{"role": "user", "content": "  "}]}),
            json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
            "",
            good,
        ],
    )
    with pytest.raises(UserError) as err:
        data.read_samples(path)
    got = {(p.where.split(":")[1], p.rule) for p in err.value.problems}
    assert got == {("2", "json"), ("3", "messages"), ("4", "role"), ("5", "content"), ("6", "assistant")}
    assert all(p.where.startswith(path) for p in err.value.problems)


def test_an_empty_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="empty-data"):
        data.read_samples(_write(tmp_path / "empty.jsonl", ["", "  "]))


def test_rows_carry_digest_and_metadata(training_sets):
    samples, digest = data.read_samples(str(training_sets[1]))
    assert len(digest) == 64
    assert sum(s.metadata["phase"] == data.REPLAY_PHASE for s in samples) == 5
    assert samples[0].where == f"{training_sets[1]}:1"


def test_overlong_samples_are_dropped_or_truncated_and_counted(tokenizer, training_sets):
    samples, _ = data.read_samples(str(training_sets[0]))
    lengths = [len(data.tokenize(tokenizer, s.messages, unmask_user=True)[0]) for s in samples]
    limit = sorted(lengths)[len(lengths) // 2]
    longer = sum(n > limit for n in lengths)
    dropped = data.DataStats()
    rows = data.build_rows(
        tokenizer, samples, max_length=limit, overlong="drop", unmask_user=True, stats=dropped
    )
    assert (
        (dropped.samples, dropped.dropped_overlong) == (len(samples) - longer, longer) == (len(rows), longer)
    )
    cut = data.DataStats()
    rows = data.build_rows(
        tokenizer, samples, max_length=limit, overlong="truncate", unmask_user=True, stats=cut
    )
    assert cut.truncated_overlong == longer and max(len(r["input_ids"]) for r in rows) == limit


def test_nothing_left_after_the_length_policy_is_an_error(tokenizer, training_sets):
    samples, _ = data.read_samples(str(training_sets[0]))
    with pytest.raises(UserError, match="max_length 16"):
        data.build_rows(
            tokenizer, samples, max_length=16, overlong="drop", unmask_user=True, stats=data.DataStats()
        )


def test_replay_mixes_the_configured_fraction(training_sets):
    knowledge, _ = data.read_samples(str(training_sets[0]))
    skills = [data.Sample(CONVO, {"phase": "skills"}, f"s.jsonl:{i}") for i in range(1, 41)]
    mixed = data.mix_replay(skills, knowledge, fraction=0.25, seed=0)
    assert len(mixed) == 50
    assert sum(s.metadata["phase"] == data.REPLAY_PHASE for s in mixed) == 10
    again = data.mix_replay(list(skills), knowledge, fraction=0.25, seed=0)
    assert [s.where for s in again] == [s.where for s in mixed]  # seeded


def test_replay_twice_is_refused(training_sets):
    knowledge, _ = data.read_samples(str(training_sets[0]))
    skills_with_replay, _ = data.read_samples(str(training_sets[1]))
    with pytest.raises(UserError, match="double-replay"):
        data.mix_replay(skills_with_replay, knowledge, fraction=0.1, seed=0)


def test_chat_template_checks(tokenizer):
    data.check_chat_template(tokenizer, assistant_only=True, where="m")
    template = tokenizer.chat_template
    try:
        tokenizer.chat_template = template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
        with pytest.raises(UserError, match="generation"):
            data.check_chat_template(tokenizer, assistant_only=True, where="m")
        data.check_chat_template(tokenizer, assistant_only=False, where="m")  # unmask_user needs no markers
        tokenizer.chat_template = None
        with pytest.raises(UserError, match="--chat-template"):
            data.check_chat_template(tokenizer, assistant_only=False, where="m")
    finally:
        tokenizer.chat_template = template
