"""The sample taxonomy (repository folder `taxonomy/`) as git repositories, offline.

`prepare_sample_taxonomy(dest)` writes two repositories side by side:

    dest/sample-documents/   taxonomy/documents/*, committed with a fixed author and date, so its
                             commit id is the same on every machine (the knowledge leaf names it)
    dest/taxonomy/           the taxonomy (without documents/ and branches/), one commit on branch main

With `contributor=True`, dest/taxonomy/ also gets the branch `contrib/new-leaves`: one commit on top of
main made of the files under taxonomy/branches/contrib-new-leaves/ (one good leaf, one near-duplicate of
the haiku leaf, one broken leaf), what `labpipe review` is shown and tested on (docs/review.md).

The knowledge leaf's `document.repo` is `../sample-documents`: a relative document.repo is resolved
against the taxonomy directory (a labpipe convention; InstructLab taxonomies use URLs).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labpipe.errors import UserError
from labpipe.taxonomy import gitrepo

DOCUMENTS_DIR = "documents"
DOCUMENTS_REPO = "sample-documents"
BRANCHES_DIR = "branches"  # taxonomy/branches/<folder>: files committed on top of main as a branch
CONTRIBUTOR_BRANCH = "contrib/new-leaves"
_BRANCH_FOLDERS = {CONTRIBUTOR_BRANCH: "contrib-new-leaves"}
_FIXED = {
    "GIT_AUTHOR_NAME": "labpipe",
    "GIT_AUTHOR_EMAIL": "labpipe@example.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "labpipe",
    "GIT_COMMITTER_EMAIL": "labpipe@example.invalid",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000",
}


def sample_taxonomy_source() -> Path:
    """The checked-in sample taxonomy (LABPIPE_SAMPLE_TAXONOMY overrides)."""
    env = os.environ.get("LABPIPE_SAMPLE_TAXONOMY")
    if env:
        path = Path(env)
    else:  # installed as the package labpipe.sample_taxonomy (see setup.py); else the checkout's folder
        try:
            import labpipe.sample_taxonomy as installed

            path = Path(next(iter(installed.__path__)))
        except ImportError:
            path = Path(__file__).resolve().parents[3] / "taxonomy"
    if not (path / "compositional_skills").is_dir():
        raise UserError(
            f"{path}: the sample taxonomy is not there",
            fix="run from a labpipe checkout, or set LABPIPE_SAMPLE_TAXONOMY to its taxonomy/ folder",
        )
    return path


_GIT = ["-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"]


def commit_all(repo: Path, message: str, *, init: bool = True) -> str:
    """Commit every file in `repo` (a fresh `git init` unless `init` is False) with a fixed identity and
    date; returns the commit id."""
    git = _GIT
    if init:
        gitrepo.git(*git, "init", "--quiet", "--initial-branch=main", cwd=repo)
    gitrepo.git(*git, "add", "--all", cwd=repo)
    gitrepo.git(*git, "commit", "--quiet", "--no-verify", "-m", message, cwd=repo, env=_FIXED)
    return gitrepo.git("rev-parse", "HEAD", cwd=repo).strip()


def add_branch(taxonomy: Path, branch: str, files: Path, message: str) -> str:
    """Commit the files under `files` (laid out as in the taxonomy) on a new branch `branch` from the
    current HEAD, with the fixed identity and date; the work tree is back on the previous branch after."""
    current = gitrepo.git("rev-parse", "--abbrev-ref", "HEAD", cwd=taxonomy).strip()
    gitrepo.git(*_GIT, "checkout", "--quiet", "-b", branch, cwd=taxonomy)
    shutil.copytree(files, taxonomy, dirs_exist_ok=True)
    commit = commit_all(taxonomy, message, init=False)
    gitrepo.git(*_GIT, "checkout", "--quiet", current, cwd=taxonomy)
    return commit


def prepare_sample_taxonomy(dest: str | Path, *, contributor: bool = False) -> Path:
    """Materialise the sample taxonomy and its document repository under `dest`; returns the taxonomy path.

    `contributor`: also add the branch CONTRIBUTOR_BRANCH (the sample contribution `labpipe review` checks)."""
    source = sample_taxonomy_source()
    dest = Path(dest)
    docs, taxonomy = dest / DOCUMENTS_REPO, dest / "taxonomy"
    for path in (docs, taxonomy):
        if path.exists():
            shutil.rmtree(path)
    shutil.copytree(source / DOCUMENTS_DIR, docs)
    commit_all(docs, "sample documents")
    shutil.copytree(source, taxonomy, ignore=shutil.ignore_patterns(DOCUMENTS_DIR, BRANCHES_DIR, ".*"))
    commit_all(taxonomy, "sample taxonomy")
    if contributor:
        folder = source / BRANCHES_DIR / _BRANCH_FOLDERS[CONTRIBUTOR_BRANCH]
        add_branch(taxonomy, CONTRIBUTOR_BRANCH, folder, "Add tool care tips, tool haiku and workshop rules")
    return taxonomy
