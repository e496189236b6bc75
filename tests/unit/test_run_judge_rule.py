"""`labpipe run`: one rule for the judge - it follows the teacher unless a judge is given, whether the
teacher came as --teacher or as --param teacher=."""

from __future__ import annotations

import argparse

import pytest

from labpipe.commands.pipeline import local_arguments


@pytest.fixture(autouse=True)
def _no_upfront_checks(monkeypatch):
    """The paths and endpoints here are names only; the up-front checks have tests of their own."""
    monkeypatch.setattr("labpipe.commands.runcheck.check_before_run", lambda *a, **k: None)


def _args(**kw) -> argparse.Namespace:
    fields = dict(
        taxonomy="tax",
        base="origin/main",
        base_model="base-dir",
        teacher=None,
        teacher_model="",
        judge=None,
        judge_model="",
        param=[],
    )
    fields.update(kw)
    return argparse.Namespace(**fields)


@pytest.mark.parametrize(
    "kw",
    [
        dict(teacher="http://t:8000/v1", teacher_model="m"),
        dict(param=["teacher=http://t:8000/v1", "teacher_model=m"]),
    ],
)
def test_the_judge_follows_the_teacher_however_it_was_given(kw, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_MT_BENCH_DATA", str(shared_data / "mt_bench"))
    arguments = local_arguments(_args(**kw), tmp_path)
    assert (arguments["judge"], arguments["judge_model"]) == ("http://t:8000/v1", "m")


def test_a_judge_given_either_way_is_kept(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LABPIPE_MT_BENCH_DATA", str(shared_data / "mt_bench"))
    arguments = local_arguments(_args(param=["teacher=http://t/v1", "judge=http://j/v1"]), tmp_path)
    assert arguments["judge"] == "http://j/v1"
    arguments = local_arguments(_args(teacher="http://t/v1", judge="http://j/v1"), tmp_path)
    assert arguments["judge"] == "http://j/v1"
