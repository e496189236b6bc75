"""Knowledge documents: fetched from `document.repo` at `document.commit`, selected by `patterns`,
converted to text.

Checkouts are cached by repository and commit under `labpipe.storage.cache_dir()/documents`, so a
rerun (or a second leaf on the same repository) does not clone again. Markdown and plain text are read
as they are; PDF goes through pypdf (text layer only, no model downloads). A repository that cannot be
cloned, a commit it does not have, or patterns that match no document are errors located at the field
of the leaf's qna.yaml that names them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labpipe.errors import Problem, UserError
from labpipe.storage import atomic_dir, cache_dir
from labpipe.taxonomy import gitrepo

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
PDF_SUFFIXES = (".pdf",)
_COMPLETE = ".labpipe-complete"
_FULL_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")


@dataclass
class SourceDocument:
    path: str  # relative to the document repository root
    text: str


@dataclass
class DocumentRef:
    """A leaf's `document` block and where each of its fields sits (for error messages)."""

    repo: str
    commit: str
    patterns: list[str]
    where_repo: str = ""
    where_commit: str = ""
    where_patterns: str = ""
    leaf_id: str = ""


def _cache_slot(repo: str, commit: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", repo.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1])[:40]
    return cache_dir() / "documents" / f"{name}-{hashlib.sha256(repo.encode()).hexdigest()[:12]}" / commit


def checkout(ref: DocumentRef) -> tuple[Path, str]:
    """A local directory holding the repository's files at the commit (cached), and the full commit id."""
    commit = ref.commit.strip().lower()
    if _FULL_SHA.match(commit) and (_cache_slot(ref.repo, commit) / _COMPLETE).exists():
        return _cache_slot(ref.repo, commit), commit
    with tempfile.TemporaryDirectory(prefix="labpipe-doc-") as tmp:
        work = Path(tmp) / "repo"
        try:
            gitrepo.git("clone", "--quiet", "--no-checkout", ref.repo, str(work))
        except gitrepo.GitError as exc:
            raise UserError(
                Problem(
                    where=ref.where_repo or ref.repo,
                    rule="document-repo",
                    field="document.repo",
                    message=f"leaf {ref.leaf_id}: cannot clone the document repository {ref.repo} ({exc.detail})",
                    fix="check the URL and network access; offline, point document.repo at a local git repository "
                    "(a path or file:// URL)",
                )
            ) from None
        full = gitrepo.resolve(commit, work)
        if full is None and re.match(r"^[0-9a-f]{7,64}$", commit):
            try:
                gitrepo.git("fetch", "--quiet", "origin", commit, cwd=work)
                full = gitrepo.resolve("FETCH_HEAD", work)
            except gitrepo.GitError:
                full = None
        if full is None:
            raise UserError(
                Problem(
                    where=ref.where_commit or ref.repo,
                    rule="document-commit",
                    field="document.commit",
                    message=f"leaf {ref.leaf_id}: commit {ref.commit} does not exist in {ref.repo}",
                    fix=f"set document.commit to a commit of {ref.repo} (git log in that repository lists them)",
                )
            )
        slot = _cache_slot(ref.repo, full)
        if (slot / _COMPLETE).exists():
            return slot, full
        gitrepo.git("checkout", "--quiet", "--detach", full, cwd=work)
        shutil.rmtree(work / ".git")
        (work / _COMPLETE).write_text(f"{ref.repo}@{full}\n")
        with atomic_dir(slot) as out:
            shutil.copytree(work, out, dirs_exist_ok=True)
    return slot, full


def to_text(path: Path) -> str:
    if path.suffix.lower() in PDF_SUFFIXES:
        from pypdf import PdfReader

        pages = [page.extract_text() or "" for page in PdfReader(str(path)).pages]
        return "\n\n".join(p.strip() for p in pages if p.strip())
    return path.read_text(encoding="utf-8", errors="replace")


def fetch_documents(ref: DocumentRef) -> tuple[str, list[SourceDocument], list[Problem]]:
    """The commit id and the text of every document the patterns select; warnings for skipped files."""
    root, commit = checkout(ref)
    warnings: list[Problem] = []
    selected: dict[str, Path] = {}
    for pattern in ref.patterns:
        matches = [p for p in sorted(root.glob(pattern)) if p.is_file() and p.name != _COMPLETE]
        if not matches:
            warnings.append(
                Problem(
                    where=ref.where_patterns or ref.repo,
                    rule="document-patterns",
                    field="document.patterns",
                    severity="warning",
                    message=f"leaf {ref.leaf_id}: pattern '{pattern}' matches no file in "
                    f"{ref.repo}@{commit[:12]}",
                    fix="correct or remove the pattern",
                )
            )
        for path in matches:
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() in TEXT_SUFFIXES + PDF_SUFFIXES:
                selected[rel] = path
            else:
                warnings.append(
                    Problem(
                        where=ref.where_patterns or ref.repo,
                        rule="document-type",
                        field="document.patterns",
                        severity="warning",
                        message=f"leaf {ref.leaf_id}: {rel} is skipped: only Markdown, text and "
                        "PDF documents are read",
                        fix="convert it to Markdown",
                    )
                )
    if not selected:
        raise UserError(
            Problem(
                where=ref.where_patterns or ref.repo,
                rule="document-patterns",
                field="document.patterns",
                message=f"leaf {ref.leaf_id}: the patterns {ref.patterns} match no Markdown, text or PDF document "
                f"in {ref.repo}@{commit[:12]}",
                fix="list the documents' paths relative to the repository root, e.g. 'docs/*.md'",
            )
        )
    documents = [SourceDocument(rel, to_text(path)) for rel, path in sorted(selected.items())]
    return commit, documents, warnings
