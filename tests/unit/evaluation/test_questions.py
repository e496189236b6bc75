from __future__ import annotations

import shutil

import pytest

from labpipe.errors import UserError
from labpipe.evaluation import sources
from labpipe.evaluation.questions import CATEGORY_TEMPERATURE, load_questions, subset


def test_loads_the_80_questions_and_verifies_the_pinned_checksum(mt_bench_dir):
    questions, digest = load_questions(str(mt_bench_dir / "question.jsonl"))
    assert digest == sources.QUESTIONS.sha256
    assert len(questions) == 80 and {len(q.turns) for q in questions} == {2}
    assert sorted({q.category for q in questions}) == sorted(CATEGORY_TEMPERATURE)
    by_cat = {q.category: q.temperature for q in questions}
    assert by_cat["writing"] == by_cat["roleplay"] == 0.7
    assert by_cat["stem"] == by_cat["humanities"] == 0.1
    assert by_cat["math"] == by_cat["coding"] == by_cat["reasoning"] == by_cat["extraction"] == 0.0
    assert [q.question_id for q in questions if q.needs_reference] == list(range(101, 131))


def test_a_data_directory_is_accepted(mt_bench_dir):
    questions, _ = load_questions(str(mt_bench_dir))
    assert questions[0].question_id == 81


def test_altered_question_file_is_rejected_by_checksum(mt_bench_dir, tmp_path):
    altered = tmp_path / "question.jsonl"
    altered.write_text((mt_bench_dir / "question.jsonl").read_text().replace("Hawaii", "Hawai'i", 1))
    with pytest.raises(UserError) as err:
        load_questions(str(altered))
    problem = err.value.problems[0]
    assert problem.rule == "checksum" and problem.where == str(altered) and "--no-verify" in problem.fix
    assert len(load_questions(str(altered), verify=False)[0]) == 80  # a custom set, knowingly


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_questions(str(tmp_path / "nope.jsonl"))


def test_malformed_lines_are_located(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(
        '{"question_id": 1, "category": "writing", "turns": ["a", "b"]}\n{"question_id": 2, "turns": [1]\n'
    )
    with pytest.raises(UserError) as err:
        load_questions(str(bad), verify=False)
    assert err.value.problems[0].where.startswith(f"{bad}:2:")
    bad.write_text('{"question_id": 1, "category": "writing", "turns": []}\n')
    with pytest.raises(UserError) as err:
        load_questions(str(bad), verify=False)
    assert err.value.problems[0].field == "turns" and err.value.problems[0].where == f"{bad}:1:1"


def test_default_source_is_the_pinned_url_served_from_the_cache(mt_bench_dir):
    # Offline here: seed the cache as a first download would have, then load with no source at all.
    assert sources.QUESTIONS.url.startswith("https://raw.githubusercontent.com/lm-sys/FastChat/")
    assert sources.FASTCHAT_COMMIT in sources.QUESTIONS.url
    cached = sources._cache_path(sources.QUESTIONS.url)
    cached.parent.mkdir(parents=True)
    shutil.copy(mt_bench_dir / "question.jsonl", cached)
    questions, digest = load_questions("")
    assert len(questions) == 80 and digest == sources.QUESTIONS.sha256
    cached.write_text(cached.read_text()[:-200])  # a corrupted cache entry is caught too
    with pytest.raises(UserError, match="checksum"):
        load_questions("")


def test_stratified_subset_covers_categories(mt_bench_dir):
    questions, _ = load_questions(str(mt_bench_dir))
    picked = subset(questions, 8)
    assert len({q.category for q in picked}) == 8
    assert [q.question_id for q in picked] == sorted(q.question_id for q in picked)
    assert subset(questions, 0) == questions
