"""Every validation rule and its message: file:line:column, field, rule and fix."""

from __future__ import annotations

import pytest

from labpipe.taxonomy.validate import validate_taxonomy
from tests.unit.taxonomy.gitscenario import FREEFORM, knowledge_yaml, write_leaf

SKILL = "compositional_skills/test/leaf"
KNOW = "knowledge/test/leaf"


def problems_of(root, leaf_id=SKILL, text=FREEFORM, **kw):
    write_leaf(root, leaf_id, text, **kw)
    return validate_taxonomy(root).problems


def only(problems, rule):
    found = [p for p in problems if p.rule == rule]
    assert found, f"no {rule} problem in {[str(p) for p in problems]}"
    return found[0]


def test_valid_leaves_have_no_problems(tmp_path):
    write_leaf(tmp_path, SKILL, FREEFORM)
    write_leaf(tmp_path, KNOW, knowledge_yaml())
    report = validate_taxonomy(tmp_path)
    assert report.problems == []
    assert {leaf.kind for leaf in report.leaves} == {"freeform_skill", "knowledge"}


# -- YAML style (InstructLab's strict yamllint profile) ---------------------------------------------
@pytest.mark.parametrize(
    ("edit", "rule", "where", "message"),
    [
        (
            lambda t: t.replace("answer: four", "answer: four   "),
            "trailing-spaces",
            "8:17",
            "trailing spaces",
        ),
        (lambda t: t.replace("  - question: What is 2", "\t- question: What is 2"), "tabs", "7:1", "tab"),
        (
            lambda t: t.replace("created_by: tester\n", "created_by: tester\ncreated_by: other\n"),
            "key-duplicates",
            "3:1",
            'duplication of key "created_by"',
        ),
        (lambda t: t.replace("    answer: two\n", "     answer: two\n"), "syntax", "6:", "syntax error"),
        (
            lambda t: t.replace("What is 1 + 1?", "What is " + "one plus one and " * 8 + "1?"),
            "line-length",
            "5:121",
            "line too long",
        ),
        (
            lambda t: t.replace("answer: two\n", "answer: two\n\n\n\n"),
            "empty-lines",
            "9:1",
            "too many blank lines (3 > 2)",
        ),
        (lambda t: t.rstrip("\n"), "new-line-at-end-of-file", "14:", "no new line character"),
        (
            lambda t: t.replace(
                "  - question: What is 1 + 1?\n    answer", "  -  question: What is 1 + 1?\n     answer"
            ),
            "hyphens",
            "5:4",
            "too many spaces after hyphen",
        ),
        (lambda t: t.replace("created_by: tester", "created_by :  tester"), "colons", "2:11", "before colon"),
        (lambda t: t.replace("\n", "\r\n"), "new-lines", "1:", "wrong new line character"),
    ],
)
def test_yaml_style_rules(tmp_path, edit, rule, where, message):
    problem = only(problems_of(tmp_path, text=edit(FREEFORM)), rule)
    assert problem.where.startswith(f"{SKILL}/qna.yaml:{where}")
    assert message in problem.message
    assert problem.fix and problem.severity == "error"


def test_inconsistent_indentation(tmp_path):
    text = knowledge_yaml().replace("\n  repo:", "\n    repo:").replace("\n  commit:", "\n    commit:")
    text = text.replace("\n  patterns:\n    - 'doc.md'", "\n    patterns:\n      - 'doc.md'")
    p = only(problems_of(tmp_path, KNOW, text), "indentation")
    assert p.where == f"{KNOW}/qna.yaml:47:5" and p.field == "document"
    assert p.message == "wrong indentation: expected 2 but found 4"


def test_version_1_files_are_not_linted(tmp_path):
    text = FREEFORM.replace("version: 3\n", "").replace("answer: four", "answer: four   ")
    problems = problems_of(tmp_path, text=text)
    assert [p.rule for p in problems] == ["version-missing"]
    assert problems[0].severity == "warning"


# -- schema ----------------------------------------------------------------------------------------
def test_missing_field(tmp_path):
    p = only(
        problems_of(tmp_path, text=FREEFORM.replace("task_description: Answer arithmetic questions.\n", "")),
        "required",
    )
    assert (
        p.where == f"{SKILL}/qna.yaml:1:1"
        and "'task_description'" in p.message
        and "add 'task_description:'" in p.fix
    )


def test_too_few_seed_examples(tmp_path):
    text = FREEFORM.split("  - question: What is 3")[0]
    p = only(problems_of(tmp_path, text=text), "min-items")
    assert p.where == f"{SKILL}/qna.yaml:5:3" and p.field == "seed_examples"
    assert "has 2 seed examples; at least 5" in p.message and "add 3 more" in p.fix


def test_duplicate_seed_examples(tmp_path):
    text = FREEFORM.replace("What is 5 + 5?\n    answer: ten", "What is 4 + 4?\n    answer: eight")
    p = only(problems_of(tmp_path, text=text), "duplicate")
    assert p.where == f"{SKILL}/qna.yaml:13:5" and p.field == "seed_examples[4]"
    assert "seed example 5 duplicates seed example 4" in p.message


def test_unknown_key_suggests_the_right_one(tmp_path):
    p = only(problems_of(tmp_path, text=FREEFORM.replace("created_by:", "created_bye:")), "unknown-key")
    assert p.where == f"{SKILL}/qna.yaml:2:1" and p.field == "created_bye"
    assert "did you mean 'created_by'?" in p.fix


def test_knowledge_below_version_3_says_so(tmp_path):
    p = only(problems_of(tmp_path, KNOW, knowledge_yaml().replace("version: 3", "version: 2")), "version")
    assert p.where == f"{KNOW}/qna.yaml:1:10" and "knowledge needs version 3" in p.message
    assert "version: 3" in p.fix


def test_unsupported_and_missing_knowledge_version(tmp_path):
    p = only(problems_of(tmp_path, text=FREEFORM.replace("version: 3", "version: 7")), "version")
    assert "unsupported version 7" in p.message
    p = only(problems_of(tmp_path / "k", KNOW, knowledge_yaml().replace("version: 3\n", "")), "version")
    assert "missing 'version'" in p.message


def test_knowledge_needs_three_qna_per_context_and_five_contexts(tmp_path):
    problems = problems_of(tmp_path, KNOW, knowledge_yaml(contexts=4, qnas=2))
    mins = [p for p in problems if p.rule == "min-items"]
    assert mins[0].field == "seed_examples" and "at least 5" in mins[0].message
    assert mins[1].field == "seed_examples[0].questions_and_answers" and "at least 3" in mins[1].message


def test_knowledge_document_needs_repo_and_commit(tmp_path):
    text = knowledge_yaml().replace("  commit: 'abc1234'\n", "")
    p = only(problems_of(tmp_path, KNOW, text), "required")
    assert p.field == "document" and "'commit'" in p.message


def test_type_and_empty_values(tmp_path):
    problems = problems_of(
        tmp_path,
        text=FREEFORM.replace("What is 1 + 1?", "''").replace("created_by: tester", "created_by: [a]"),
    )
    assert "must be a string" in only(problems, "type").message
    assert only(problems, "empty").field == "seed_examples[0].question"


def test_a_leaf_does_not_mix_grounded_and_freeform(tmp_path):
    text = FREEFORM.replace(
        "  - question: What is 2 + 2?", "  - context: Some text.\n    question: What is 2 + 2?"
    )
    p = only(problems_of(tmp_path, text=text), "mixed-grounding")
    assert "1 of 5 seed examples have a 'context'" in p.message and p.field == "seed_examples[0]"


def test_missing_attribution(tmp_path):
    p = only(problems_of(tmp_path, attribution=False), "attribution")
    assert p.where == f"{SKILL}/attribution.txt" and "License of the work" in p.fix


def test_top_level_not_a_mapping(tmp_path):
    p = only(problems_of(tmp_path, text="- a\n- b\n"), "not-a-mapping")
    assert p.where == f"{SKILL}/qna.yaml:1:1"


# -- warnings: located the same way, no change to the exit code ------------------------------------
def test_misspelled_file_name_is_a_warning_and_skipped(tmp_path):
    write_leaf(tmp_path, SKILL, FREEFORM, name="qna.yml")
    report = validate_taxonomy(tmp_path)
    p = only(report.problems, "file-name")
    assert p.severity == "warning" and p.where == f"{SKILL}/qna.yml:1:1" and "rename it to qna.yaml" in p.fix
    assert report.checked == 0 and not report.errors


def test_empty_file_is_a_warning(tmp_path):
    p = only(problems_of(tmp_path, text="\n"), "empty-file")
    assert p.severity == "warning" and "skipped" in p.message


def test_size_limits_are_warnings(tmp_path):
    long_answer = "|\n" + "".join(f"      word{i} is here.\n" for i in range(100))
    problems = problems_of(tmp_path, text=FREEFORM.replace("answer: two\n", f"answer: {long_answer}"))
    p = only(problems, "size-limit")
    assert p.severity == "warning" and p.field == "seed_examples[0].answer" and "limit is 250" in p.message
    assert not [q for q in problems if q.severity == "error"]


# -- whole taxonomies ------------------------------------------------------------------------------
def test_one_bad_leaf_among_a_hundred_reports_that_leaf_only(tmp_path):
    for i in range(100):
        text = FREEFORM.replace("created_by:", "created_bye:") if i == 57 else FREEFORM
        write_leaf(tmp_path, f"compositional_skills/many/leaf_{i:03d}", text)
    report = validate_taxonomy(tmp_path)
    assert report.checked == 100 and len(report.leaves) == 99
    assert {p.where.split(":")[0] for p in report.problems} == {"compositional_skills/many/leaf_057/qna.yaml"}


def test_every_problem_of_every_leaf_is_reported(tmp_path):
    write_leaf(tmp_path, "compositional_skills/a", FREEFORM.replace("created_by:", "created_bye:"))
    write_leaf(tmp_path, "compositional_skills/b", FREEFORM, attribution=False)
    write_leaf(tmp_path, KNOW, knowledge_yaml().replace("version: 3", "version: 1"))
    rules = {(p.where.split("/")[1], p.rule) for p in validate_taxonomy(tmp_path).errors}
    assert {("a", "unknown-key"), ("a", "required"), ("b", "attribution"), ("test", "version")} <= rules


def test_real_taxonomy_head_is_valid(shared_data):
    report = validate_taxonomy(shared_data / "taxonomy" / "head", foundational=True)
    assert report.errors == []
    assert report.checked == 16 and len(report.leaves) == 16
    kinds = {leaf.kind for leaf in report.leaves}
    assert kinds == {"knowledge", "grounded_skill", "freeform_skill", "foundational_skill"}


def test_real_broken_leaves_are_located(shared_data):
    root = shared_data / "taxonomy" / "scenarios" / "S3_pr1430_spaces_and_foundational" / "head"
    report = validate_taxonomy(root)
    finance = "knowledge/finance/Financial Contracts & Derivatives Legal Documentation"
    syntax = only(report.problems, "syntax")
    assert syntax.where == f"{finance}/ISDA Master 3/qna.yaml:34:4"
    assert only(report.problems, "attribution").where.startswith(finance)
    assert "knowledge/science/animals/birds/black_capped_chickadee/qna.yaml" in {
        leaf.path for leaf in report.leaves
    }
