"""Helpers shared by the taxonomy tests: leaves written from templates, and real git repositories
built from ../shared/data/taxonomy (scenario base/head trees, document folders)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from labpipe.taxonomy.sample import commit_all

ATTRIBUTION = "Title of work: test\nLink to work: none\nRevision: 1\nLicense of the work: Apache-2.0\nCreator names: tests\n"

FREEFORM = """\
version: 3
created_by: tester
task_description: Answer arithmetic questions.
seed_examples:
  - question: What is 1 + 1?
    answer: two
  - question: What is 2 + 2?
    answer: four
  - question: What is 3 + 3?
    answer: six
  - question: What is 4 + 4?
    answer: eight
  - question: What is 5 + 5?
    answer: ten
"""


def knowledge_yaml(
    repo: str = "https://example.invalid/docs.git",
    commit: str = "abc1234",
    patterns: tuple[str, ...] = ("doc.md",),
    contexts: int = 5,
    qnas: int = 3,
) -> str:
    lines = [
        "version: 3",
        "created_by: tester",
        "domain: testing",
        "document_outline: A test document.",
        "seed_examples:",
    ]
    for c in range(contexts):
        lines += [f"  - context: Context number {c} about the test document.", "    questions_and_answers:"]
        for q in range(qnas):
            lines += [
                f"      - question: Question {q} on context {c}?",
                f"        answer: Answer {q} on context {c}.",
            ]
    lines += ["document:", f"  repo: {repo}", f"  commit: '{commit}'", "  patterns:"]
    lines += [f"    - '{p}'" for p in patterns]
    return "\n".join(lines) + "\n"


def write_leaf(
    root: Path, leaf_id: str, text: str, *, attribution: bool = True, name: str = "qna.yaml"
) -> str:
    leaf = root / leaf_id
    leaf.mkdir(parents=True, exist_ok=True)
    (leaf / name).write_text(textwrap.dedent(text) if text.startswith("\n") else text)
    if attribution:
        (leaf / "attribution.txt").write_text(ATTRIBUTION)
    return f"{leaf_id}/{name}"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "tests@example.invalid")
    git(repo, "config", "user.name", "tests")
    git(repo, "config", "commit.gpgsign", "false")


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def replace_tree(repo: Path, source: Path) -> None:
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.copytree(source, repo, dirs_exist_ok=True)


def scenario_repo(
    shared_data: Path, scenario: str, dest: Path, rewrite: dict[str, str] | None = None
) -> Path:
    """base committed on main, head committed on branch `feature` (checked out); `rewrite` replaces text
    in every qna.yaml (to point document.repo/commit at local repositories)."""
    src = shared_data / "taxonomy" / "scenarios" / scenario
    init_repo(dest)
    for side, branch in (("base", None), ("head", "feature")):
        if branch:
            git(dest, "checkout", "-q", "-b", branch)
        replace_tree(dest, src / side)
        for qna in dest.rglob("qna.yaml"):
            text = qna.read_text()
            for old, new in (rewrite or {}).items():
                text = text.replace(old, new)
            qna.write_text(text)
        commit(dest, side)
    return dest


def documents_repo(shared_data: Path, folder: str, commit_id: str, dest: Path) -> str:
    """A git repository of documents/<folder>/<commit_id>/; returns its (deterministic) commit id."""
    shutil.copytree(shared_data / "taxonomy" / "documents" / folder / commit_id, dest)
    return commit_all(dest, f"documents of {folder}@{commit_id}")
