"""Which leaves changed: InstructLab's `taxonomy diff` semantics, with five git calls whatever the size.

A leaf is a `qna.yaml` under `compositional_skills/` or `knowledge/` (`foundational_skills/` is never
diffed). Changed means: different in the work tree (committed or not) from the merge base of HEAD and
the base ref, or untracked (and not ignored). Deleted leaves are listed as deleted and never generated;
renames are detected (`git diff -M`). Base `empty` means every leaf, and is the only base that works in a
directory that is not a git repository. The taxonomy may be a sub-directory of a larger repository.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from labpipe.errors import Problem, UserError
from labpipe.taxonomy import gitrepo
from labpipe.taxonomy.validate import (
    DIFF_AREAS,
    LEAF_FILE,
    find_leaf_files,
    looks_like_leaf_file,
    misspelled_warning,
    taxonomy_root,
)

EMPTY_BASE = "empty"
DEFAULT_BASE = "origin/main"
STATUSES = ("added", "modified", "untracked", "renamed", "deleted")
_GIT_STATUS = {
    "A": "added",
    "M": "modified",
    "T": "modified",
    "U": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "added",
}


@dataclass
class LeafChange:
    leaf_id: str  # the leaf directory relative to the taxonomy root
    path: str  # its qna.yaml relative to the taxonomy root
    status: str  # added | modified | untracked | renamed | deleted
    old_path: str = ""  # for renamed leaves: the qna.yaml path at the merge base


@dataclass
class TaxonomyDiff:
    root: str
    head_commit: str  # "" when the taxonomy is not a git repository
    base_requested: str
    base_used: str  # the commit id the base ref resolved to, or "empty"
    merge_base: str  # "" for base "empty"
    changes: list[LeafChange] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> list[LeafChange]:
        """Leaves to validate and generate from: everything but deletions."""
        return [c for c in self.changes if c.status != "deleted"]

    def counts(self) -> dict[str, int]:
        return {status: sum(c.status == status for c in self.changes) for status in STATUSES}

    def describe_base(self) -> str:
        if self.base_requested == EMPTY_BASE:
            return "base: empty (every leaf)"
        return f"base: {self.base_requested} = {self.base_used[:12]}, merge base with HEAD {self.merge_base[:12]}"

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("changes", "warnings")}
        out["leaves"] = [asdict(c) for c in self.changes]
        out["counts"] = self.counts()
        return out


def taxonomy_diff(root: str | Path, base: str = DEFAULT_BASE) -> TaxonomyDiff:
    """The leaves of the taxonomy at `root` that changed against `base` (a ref, or "empty" for all)."""
    root = taxonomy_root(root).resolve()
    base = base or DEFAULT_BASE
    if gitrepo.work_tree_prefix(root) is None:
        if base != EMPTY_BASE:
            raise UserError(
                Problem(
                    where=str(root),
                    rule="not-a-git-repository",
                    message=f"the taxonomy is not a git repository, so it cannot be diffed against '{base}'",
                    fix="pass --base empty to take every leaf, or make it a repository (git init && git add . && "
                    "git commit -m taxonomy)",
                )
            )
        paths, warnings = find_leaf_files(root)
        changes = [LeafChange(_leaf_id(p), p, "added") for p in paths]
        return TaxonomyDiff(str(root), "", base, EMPTY_BASE, "", changes, warnings)

    head = gitrepo.resolve("HEAD", root) or ""
    if base == EMPTY_BASE:
        base_used, since = EMPTY_BASE, gitrepo.git("hash-object", "-t", "tree", "/dev/null", cwd=root).strip()
        merge_base = ""
    else:
        base_used = gitrepo.resolve(base, root) or ""
        if not base_used:
            raise UserError(
                Problem(
                    where=str(root),
                    rule="base-ref",
                    field="--base",
                    message=f"the base ref '{base}' does not exist in this repository",
                    fix="pass --base with an existing branch, tag or commit (git branch -a lists them; "
                    f"{'run git fetch origin, or ' if base.startswith('origin/') else ''}"
                    "use e.g. --base main), or --base empty to take every leaf",
                )
            )
        if not head:
            raise UserError(
                Problem(
                    where=str(root),
                    rule="no-commits",
                    message="the repository has no commits",
                    fix="commit the taxonomy first, or pass --base empty",
                )
            )
        try:
            merge_base = gitrepo.git("merge-base", "HEAD", base_used, cwd=root).strip()
        except gitrepo.GitError:
            raise UserError(
                Problem(
                    where=str(root),
                    rule="base-ref",
                    field="--base",
                    message=f"HEAD and '{base}' have no common ancestor",
                    fix="pass a base on the history of HEAD, or --base empty",
                )
            ) from None
        since = merge_base

    changes: list[LeafChange] = []
    warnings: list[Problem] = []
    diff = gitrepo.git(
        "diff", "--name-status", "-z", "-M", "--relative", "--no-ext-diff", since, "--", *DIFF_AREAS, cwd=root
    )
    fields = diff.split("\0")
    i = 0
    while i < len(fields) - 1:
        code = fields[i][:1]
        if code in ("R", "C"):
            old, new = fields[i + 1], fields[i + 2]
            i += 3
        else:
            old, new = "", fields[i + 1]
            i += 2
        status = _GIT_STATUS.get(code, "modified")
        if status == "renamed" and _is_leaf(old) and _is_leaf(new):
            changes.append(LeafChange(_leaf_id(new), new, "renamed", old))
            continue
        if status == "renamed":  # a rename across the qna.yaml name: the old leaf is gone, the new one added
            if _is_leaf(old):
                changes.append(LeafChange(_leaf_id(old), old, "deleted"))
            status = "added"
        if _is_leaf(new):
            changes.append(LeafChange(_leaf_id(new), new, status))
        elif status != "deleted" and looks_like_leaf_file(new.rsplit("/", 1)[-1]):
            warnings.append(misspelled_warning(new))
    untracked = gitrepo.git("ls-files", "--others", "--exclude-standard", "-z", "--", *DIFF_AREAS, cwd=root)
    for path in filter(None, untracked.split("\0")):
        if _is_leaf(path):
            changes.append(LeafChange(_leaf_id(path), path, "untracked"))
        elif looks_like_leaf_file(path.rsplit("/", 1)[-1]):
            warnings.append(misspelled_warning(path))
    changes.sort(key=lambda c: (c.path, c.status))
    return TaxonomyDiff(str(root), head, base, base_used, merge_base, changes, warnings)


def _is_leaf(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == LEAF_FILE and path.split("/", 1)[0] in DIFF_AREAS


def _leaf_id(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."
