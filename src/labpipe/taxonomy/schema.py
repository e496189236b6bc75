"""The qna.yaml schema: InstructLab's schema versions 1-3 for compositional skills, knowledge and
foundational skills, checked field by field so that every problem carries its line, column and path.

Rules follow instructlab-schema (v1/v2/v3 `compositional_skills.json`, `knowledge.json`): required
fields, no unknown keys, `seed_examples` of at least 5 unique items from version 2 on (1 in version 1),
knowledge only from version 3 (at least 5 contexts with at least 3 unique Q&A each, `document` with
`patterns`). labpipe adds what its pipeline needs: `document.repo` and `document.commit` are required
(seed extraction fetches the documents), and a skill leaf's seed examples either all have a `context`
(grounded) or none (freeform). The documented size limits (context < 500 tokens, question and answer
< 250 tokens) are warnings: what fits depends on the teacher's context window.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labpipe.errors import Problem
from labpipe.taxonomy.yamlcheck import ParsedYaml, dotted

SUPPORTED_VERSIONS = (1, 2, 3)
MIN_KNOWLEDGE_VERSION = 3
MIN_SEED_EXAMPLES = {1: 1, 2: 5, 3: 5}
MIN_KNOWLEDGE_QNA = 3
SIZE_LIMITS = {"context": 500, "question": 250, "answer": 250}  # tokens, InstructLab's documented limits

SKILL_KEYS = ("version", "created_by", "task_description", "seed_examples")
KNOWLEDGE_KEYS = ("version", "created_by", "domain", "document_outline", "document", "seed_examples")
DOCUMENT_KEYS = ("repo", "commit", "patterns", "folder")
SKILL_EXAMPLE_KEYS = ("context", "question", "answer")
KNOWLEDGE_EXAMPLE_KEYS = ("context", "questions_and_answers")
QNA_KEYS = ("question", "answer")

_TOKEN = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Token count without a tokenizer: one per word or punctuation mark (BPE tokenizers of English
    text land within about 30% of it). Used for size warnings, and for chunks when no tokenizer is given."""
    return len(_TOKEN.findall(text))


@dataclass
class Checked:
    """What schema checking learned about a leaf: its kind and version, and the problems found."""

    kind: str  # knowledge | freeform_skill | grounded_skill | foundational_skill
    version: int
    problems: list[Problem]


class _Checker:
    def __init__(self, parsed: ParsedYaml, where: str, area: str):
        self.parsed = parsed
        self.data = parsed.data
        self.where = where
        self.area = area  # compositional_skills | knowledge | foundational_skills
        self.problems: list[Problem] = []

    def add(self, path: tuple, rule: str, message: str, fix: str, severity: str = "error") -> None:
        at_key = rule == "unknown-key" and path in self.parsed.key_marks
        line, col = self.parsed.key_marks[path] if at_key else self.parsed.mark(path)
        self.problems.append(
            Problem(
                where=f"{self.where}:{line}:{col}",
                rule=rule,
                message=message,
                fix=fix,
                field=dotted(path) or ".",
                severity=severity,
            )
        )

    # -- building blocks -------------------------------------------------------------------------
    def keys(self, obj: dict, path: tuple, allowed: tuple[str, ...]) -> None:
        for key in obj:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                self.add(
                    (*path, key),
                    "unknown-key",
                    f"unknown key '{key}'",
                    f"{hint}allowed keys here: {', '.join(allowed)}",
                )

    def required(self, obj: dict, path: tuple, names: tuple[str, ...]) -> None:
        for name in names:
            if name not in obj:
                self.add(
                    path,
                    "required",
                    f"missing required field '{name}'",
                    f"add '{name}:' {'here' if path else 'at the top level'}",
                )

    def string(self, obj: dict, path: tuple, name: str, *, allow_empty: bool = False) -> str | None:
        if name not in obj:
            return None
        value = obj[name]
        here = (*path, name)
        if not isinstance(value, str):
            self.add(
                here,
                "type",
                f"'{name}' must be a string, not {_kind_of(value)}",
                "write the value as text (quote it if YAML reads it as a number or boolean)",
            )
            return None
        if not allow_empty and not value.strip():
            self.add(here, "empty", f"'{name}' must not be empty", f"write the {name.replace('_', ' ')}")
            return None
        return value

    def array(self, obj: dict, path: tuple, name: str, minimum: int, what: str, unique: bool = True) -> list:
        if name not in obj:
            return []
        value = obj[name]
        here = (*path, name)
        if not isinstance(value, list):
            self.add(
                here,
                "type",
                f"'{name}' must be a list, not {_kind_of(value)}",
                f"write each {what} as a '- ' item under '{name}:'",
            )
            return []
        if len(value) < minimum:
            self.add(
                here,
                "min-items",
                f"'{name}' has {len(value)} {what}s; at least {minimum} are required",
                f"add {minimum - len(value)} more {what}{'s' if minimum - len(value) > 1 else ''}",
            )
        if unique:
            seen: dict[str, int] = {}
            for i, item in enumerate(value):
                key = repr(item)
                if key in seen:
                    self.add(
                        (*here, i),
                        "duplicate",
                        f"{what} {i + 1} duplicates {what} {seen[key] + 1}",
                        "remove it or make it different; seed examples must be unique",
                    )
                else:
                    seen[key] = i
        return value

    def size(self, text: str | None, path: tuple, name: str) -> None:
        if text is None:
            return
        limit = SIZE_LIMITS[name]
        n = approx_tokens(text)
        if n > limit:
            self.add(
                path,
                "size-limit",
                f"{name} is about {n} tokens; InstructLab's documented limit is {limit} "
                "(what fits depends on the teacher's context window)",
                f"shorten the {name} below {limit} tokens",
                severity="warning",
            )

    def each_object(self, items: list, path: tuple, what: str, fn: Callable[[dict, tuple], None]) -> None:
        for i, item in enumerate(items):
            here = (*path, i)
            if not isinstance(item, dict):
                self.add(
                    here,
                    "type",
                    f"{what} {i + 1} must be a mapping of keys to values, not {_kind_of(item)}",
                    "write it as 'key: value' lines under the '- '",
                )
                continue
            fn(item, here)

    # -- kinds -----------------------------------------------------------------------------------
    def version(self) -> int | None:
        data = self.data
        if "version" not in data:
            if self.area == "knowledge":
                self.add(
                    (),
                    "version",
                    "missing 'version'; knowledge needs version 3",
                    "add 'version: 3' and the version 3 fields (domain, document_outline, document)",
                )
                return None
            self.add(
                (),
                "version-missing",
                "no 'version': read as a legacy version 1 file (not linted)",
                "add 'version: 3' and at least 5 unique seed examples",
                severity="warning",
            )
            return 1
        value = data["version"]
        if isinstance(value, bool) or not isinstance(value, int) or value not in SUPPORTED_VERSIONS:
            self.add(
                ("version",),
                "version",
                f"unsupported version {value!r}; supported: 1, 2, 3",
                "set 'version: 3'",
            )
            return None
        if self.area == "knowledge" and value < MIN_KNOWLEDGE_VERSION:
            self.add(
                ("version",),
                "version",
                f"knowledge version {value} is no longer supported; knowledge needs version "
                f"{MIN_KNOWLEDGE_VERSION}",
                "set 'version: 3' and add domain, document_outline, document (repo, commit, patterns) and "
                "5 seed contexts with 3 questions_and_answers each",
            )
            return None
        return value

    def skill(self, version: int) -> str:
        data = self.data
        self.keys(data, (), SKILL_KEYS)
        self.required(data, (), ("created_by", "task_description", "seed_examples"))
        self.string(data, (), "created_by")
        self.string(data, (), "task_description", allow_empty=version == 1)
        examples = self.array(
            data, (), "seed_examples", MIN_SEED_EXAMPLES[version], "seed example", unique=version > 1
        )

        def example(item: dict, here: tuple) -> None:
            self.keys(item, here, SKILL_EXAMPLE_KEYS)
            self.required(item, here, ("question", "answer"))
            for name in SKILL_EXAMPLE_KEYS:
                self.size(self.string(item, here, name), (*here, name), name)

        self.each_object(examples, ("seed_examples",), "seed example", example)
        with_context = [i for i, e in enumerate(examples) if isinstance(e, dict) and "context" in e]
        if self.area == "foundational_skills":
            return "foundational_skill"
        if with_context and len(with_context) != len(examples):
            missing = next(i for i, e in enumerate(examples) if i not in with_context)
            self.add(
                ("seed_examples", missing),
                "mixed-grounding",
                f"{len(with_context)} of {len(examples)} seed examples have a 'context': a leaf is either a "
                "grounded skill (every example has a context) or a freeform skill (none has)",
                "add a context to every seed example, or move the grounded ones to their own leaf",
            )
        return "grounded_skill" if with_context else "freeform_skill"

    def knowledge(self) -> str:
        data = self.data
        self.keys(data, (), KNOWLEDGE_KEYS)
        self.required(data, (), ("created_by", "domain", "document_outline", "document", "seed_examples"))
        for name in ("created_by", "domain", "document_outline"):
            self.string(data, (), name)
        document = data.get("document")
        if document is not None:
            if not isinstance(document, dict):
                self.add(
                    ("document",),
                    "type",
                    "'document' must be a mapping with repo, commit and patterns",
                    "write 'repo:', 'commit:' and 'patterns:' under 'document:'",
                )
            else:
                path = ("document",)
                self.keys(document, path, DOCUMENT_KEYS)
                self.required(document, path, ("repo", "commit", "patterns"))
                self.string(document, path, "repo")
                self.string(document, path, "commit")
                patterns = self.array(document, path, "patterns", 1, "pattern")
                for i, pattern in enumerate(patterns):
                    if not isinstance(pattern, str) or not pattern.strip():
                        self.add(
                            (*path, "patterns", i),
                            "type",
                            "a pattern must be a non-empty string",
                            "write a glob such as '*.md' or 'docs/guide.md'",
                        )
        contexts = self.array(data, (), "seed_examples", MIN_SEED_EXAMPLES[3], "seed example")

        def context(item: dict, here: tuple) -> None:
            self.keys(item, here, KNOWLEDGE_EXAMPLE_KEYS)
            self.required(item, here, KNOWLEDGE_EXAMPLE_KEYS)
            self.size(self.string(item, here, "context"), (*here, "context"), "context")
            qnas = self.array(item, here, "questions_and_answers", MIN_KNOWLEDGE_QNA, "question and answer")

            def qna(pair: dict, where: tuple) -> None:
                self.keys(pair, where, QNA_KEYS)
                self.required(pair, where, QNA_KEYS)
                for name in QNA_KEYS:
                    self.size(self.string(pair, where, name), (*where, name), name)

            self.each_object(qnas, (*here, "questions_and_answers"), "question and answer", qna)

        self.each_object(contexts, ("seed_examples",), "seed example", context)
        return "knowledge"


def check_leaf(parsed: ParsedYaml, where: str, area: str) -> Checked:
    """Check the parsed qna.yaml of a leaf under `area` (its top-level taxonomy folder)."""
    checker = _Checker(parsed, where, area)
    data = parsed.data
    if not isinstance(data, dict):
        checker.add(
            (),
            "not-a-mapping",
            f"the top level must be a mapping of keys to values, not {_kind_of(data)}",
            "start the file with 'version: 3' and the other keys at column 1",
        )
        return Checked("", 0, checker.problems)
    version = checker.version()
    if version is None:
        return Checked("knowledge" if area == "knowledge" else "", 0, checker.problems)
    kind = checker.knowledge() if area == "knowledge" else checker.skill(version)
    return Checked(kind, version, checker.problems)


def _kind_of(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "empty",
    }.get(type(value), type(value).__name__)
