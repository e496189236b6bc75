"""Validate a taxonomy in one pass: every leaf is checked and every problem reported, so one bad leaf
never hides another.

A leaf is a directory holding a `qna.yaml` under `compositional_skills/` or `knowledge/` (and
`foundational_skills/` when asked). A file that looks like a misspelled `qna.yaml` (`qna.yml`,
`QnA.yaml`, `questions.yaml` ...) gets a warning naming the right spelling and is skipped, as is an
empty file (InstructLab does the same). Compositional skill and knowledge leaves need an
`attribution.txt` next to their qna.yaml.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.taxonomy.schema import check_leaf
from labpipe.taxonomy.yamlcheck import ParsedYaml, parse_yaml

LEAF_FILE = "qna.yaml"
ATTRIBUTION_FILE = "attribution.txt"
DIFF_AREAS = ("compositional_skills", "knowledge")  # what InstructLab diffs and generates from
FOUNDATIONAL_AREA = "foundational_skills"


@dataclass
class Leaf:
    """A valid leaf: its id (directory relative to the taxonomy root), kind, and parsed content."""

    leaf_id: str
    path: str  # qna.yaml relative to the taxonomy root (posix)
    kind: str
    version: int
    data: dict[str, Any]
    digest: str  # sha256 of the qna.yaml bytes
    parsed: ParsedYaml = field(repr=False)

    def where(self, *path: Any) -> str:
        """`file:line:column` of the value at `path` in this leaf's qna.yaml."""
        line, col = self.parsed.mark(tuple(path))
        return f"{self.path}:{line}:{col}"


@dataclass
class ValidationReport:
    leaves: list[Leaf] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    checked: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    def raise_for_errors(self) -> None:
        """Raise a UserError listing every problem (warnings too) when there is at least one error."""
        if self.errors:
            raise UserError(self.problems)


def area_of(rel_path: str) -> str:
    return rel_path.split("/", 1)[0]


def looks_like_leaf_file(name: str) -> bool:
    """A YAML file that someone meant as a qna.yaml (any .yaml/.yml spelling, or a qna.* name)."""
    lower = name.lower()
    return lower.endswith((".yaml", ".yml")) or lower.split(".", 1)[0] in ("qna", "qna_yaml")


def misspelled_warning(rel_path: str) -> Problem:
    return Problem(
        where=f"{rel_path}:1:1",
        rule="file-name",
        severity="warning",
        message=f"taxonomy files must be named '{LEAF_FILE}'; '{rel_path.rsplit('/', 1)[-1]}' is skipped",
        fix=f"rename it to {LEAF_FILE}",
    )


def find_leaf_files(root: str | Path, *, foundational: bool = False) -> tuple[list[str], list[Problem]]:
    """Every qna.yaml under the taxonomy areas (relative posix paths, sorted) and a warning per misspelled file."""
    root = Path(root)
    areas = (*DIFF_AREAS, FOUNDATIONAL_AREA) if foundational else DIFF_AREAS
    found: list[str] = []
    warnings: list[Problem] = []
    for area in areas:
        top = root / area
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                if name == LEAF_FILE:
                    found.append(f"{rel_dir}/{name}")
                elif looks_like_leaf_file(name):
                    warnings.append(misspelled_warning(f"{rel_dir}/{name}"))
    return sorted(found), sorted(warnings, key=lambda p: p.where)


def validate_leaf(
    root: str | Path, rel_path: str, *, check_attribution: bool = True
) -> tuple[Leaf | None, list[Problem]]:
    """Parse, lint and schema-check one qna.yaml. Returns the leaf (None when it has errors or is skipped)."""
    file = Path(root) / rel_path
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return None, [
            Problem(
                where=rel_path,
                rule="unreadable",
                message=f"cannot read the file ({exc.strerror})",
                fix="check the path and its permissions",
            )
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            Problem(
                where=f"{rel_path}:1:{exc.start + 1}",
                rule="encoding",
                message="the file is not valid UTF-8",
                fix="save the file as UTF-8",
            )
        ]
    if not text.strip():
        return None, [
            Problem(
                where=f"{rel_path}:1:1",
                rule="empty-file",
                severity="warning",
                message="the file is empty; the leaf is skipped",
                fix=f"write the leaf's content or delete the empty {LEAF_FILE}",
            )
        ]
    parsed = parse_yaml(text, rel_path, lint=_declared_version(text) > 1)
    problems = list(parsed.problems)
    if parsed.data is None and not any(p.rule in ("syntax", "tabs") for p in problems):
        problems.append(
            Problem(
                where=f"{rel_path}:1:1",
                rule="empty-file",
                severity="warning",
                message="the file holds no YAML content; the leaf is skipped",
                fix=f"write the leaf's content or delete the empty {LEAF_FILE}",
            )
        )
        return None, problems
    if parsed.data is None:
        return None, problems
    area = area_of(rel_path)
    checked = check_leaf(parsed, rel_path, area)
    problems += checked.problems
    leaf_dir = rel_path.rsplit("/", 1)[0] if "/" in rel_path else "."
    if check_attribution and area in DIFF_AREAS and not (file.parent / ATTRIBUTION_FILE).is_file():
        problems.append(
            Problem(
                where=f"{leaf_dir}/{ATTRIBUTION_FILE}",
                rule="attribution",
                message="the leaf has no attribution.txt",
                fix="add attribution.txt with: Title of work, Link to work, Revision, "
                "License of the work, Creator names",
            )
        )
    if any(p.severity == "error" for p in problems):
        return None, problems
    leaf = Leaf(
        leaf_id=leaf_dir,
        path=rel_path,
        kind=checked.kind,
        version=checked.version,
        data=parsed.data,
        digest=hashlib.sha256(raw).hexdigest(),
        parsed=parsed,
    )
    return leaf, problems


def taxonomy_root(root: str | Path) -> Path:
    """`root` as a Path, or a located error when it is not a directory."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            Problem(
                where=str(root),
                rule="taxonomy",
                message="taxonomy directory not found",
                fix="pass --taxonomy DIR pointing at a taxonomy checkout",
            )
        )
    return root


def validate_taxonomy(
    root: str | Path, *, paths: list[str] | None = None, foundational: bool = False
) -> ValidationReport:
    """Validate every leaf of the taxonomy at `root` (or only `paths`, relative qna.yaml paths)."""
    root = taxonomy_root(root)
    report = ValidationReport()
    if paths is None:
        paths, report.problems = find_leaf_files(root, foundational=foundational)
    for rel in paths:
        leaf, problems = validate_leaf(root, rel)
        report.checked += 1
        report.problems += problems
        if leaf is not None:
            report.leaves.append(leaf)
    return report


def _declared_version(text: str) -> int:
    """The `version:` a file declares, read cheaply, to decide on linting (InstructLab lints version > 1)."""
    for line in text.splitlines():
        if line.startswith("version:"):
            value = line.split(":", 1)[1].split("#", 1)[0].strip().strip("'\"")
            return int(value) if value.isdigit() else 3
    return 1
