"""`labpipe taxonomy validate | diff` and `labpipe seeds`: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from labpipe.cli import main
from tests.unit.taxonomy.gitscenario import FREEFORM, commit, git, init_repo, write_leaf


def test_validate_reports_problems_one_per_line_and_exits_1(tmp_path, capsys):
    write_leaf(tmp_path, "compositional_skills/good", FREEFORM)
    write_leaf(tmp_path, "compositional_skills/bad", FREEFORM.replace("created_by:", "created_bye:"))
    write_leaf(tmp_path, "compositional_skills/typo", FREEFORM, name="qna.yml")
    assert main(["taxonomy", "validate", "--taxonomy", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert any(
        line.startswith("compositional_skills/bad/qna.yaml:2:1: error: unknown-key [created_bye]")
        for line in err
    )
    assert any("compositional_skills/typo/qna.yml:1:1: warning: file-name" in line for line in err)
    assert not any("good" in line for line in err)


def test_validate_warnings_keep_exit_code_0(tmp_path, capsys):
    write_leaf(tmp_path, "compositional_skills/good", FREEFORM)
    write_leaf(tmp_path, "compositional_skills/typo", FREEFORM, name="qna.yml")
    assert main(["taxonomy", "validate", "--taxonomy", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "1 leaves checked, 1 valid, 1 warnings" in out.out and "rename it to qna.yaml" in out.err


def test_validate_foundational_only_when_asked(tmp_path, capsys):
    write_leaf(tmp_path, "foundational_skills/x", "- not a mapping\n", attribution=False)
    assert main(["taxonomy", "validate", "--taxonomy", str(tmp_path)]) == 0
    assert main(["taxonomy", "validate", "--taxonomy", str(tmp_path), "--foundational"]) == 1
    assert "not-a-mapping" in capsys.readouterr().err


def test_diff_text_and_json(tmp_path, capsys):
    init_repo(tmp_path)
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM)
    commit(tmp_path, "base")
    git(tmp_path, "branch", "base")
    write_leaf(tmp_path, "knowledge/../compositional_skills/b", FREEFORM)
    assert main(["taxonomy", "diff", "--taxonomy", str(tmp_path), "--base", "base"]) == 0
    out = capsys.readouterr().out
    assert "base: base = " in out and "untracked  compositional_skills/b/qna.yaml" in out
    assert main(["taxonomy", "diff", "--taxonomy", str(tmp_path), "--base", "empty", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["added"] == 1 and doc["counts"]["untracked"] == 1 and doc["base_used"] == "empty"


def test_bad_base_is_one_line_exit_1_no_traceback(tmp_path):
    init_repo(tmp_path)
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM)
    commit(tmp_path, "base")
    proc = subprocess.run(
        [sys.executable, "-m", "labpipe.cli", "taxonomy", "diff", "--taxonomy", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "base-ref [--base]" in proc.stderr


def test_seeds_command(tmp_path, capsys):
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM)
    out = tmp_path / "seeds.jsonl"
    assert main(["seeds", "--taxonomy", str(tmp_path), "--base", "empty", "--out", str(out)]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["leaf_id"] == "compositional_skills/a" and record["kind"] == "freeform_skill"
    assert "1 seed records" in capsys.readouterr().out
