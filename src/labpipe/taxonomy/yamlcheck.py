"""Parse a qna.yaml and check its YAML style in one pass, without a yamllint subprocess per file.

InstructLab lints every qna.yaml of version 2 or more with
`yamllint -f parsable -d "{extends: relaxed, rules: {line-length: {max: 120}}}" -s FILE`; with `-s`
every yamllint warning fails the file. This module checks the rules of that profile that qna.yaml
files actually break (syntax, tabs, trailing spaces, duplicate keys, indentation, line length, blank
lines, final newline, CRLF, spaces after hyphens and around colons) using libyaml's node marks for
line:column, so a 2,000-leaf taxonomy lints in about a second. Messages use yamllint's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from labpipe.errors import Problem

MAX_LINE_LENGTH = 120
MAX_BLANK_LINES = 2

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_FIX = {
    "syntax": "fix the YAML syntax at this position (check indentation, quoting and the ':' after keys)",
    "tabs": "indent with spaces; YAML does not allow tabs for indentation",
    "trailing-spaces": "delete the spaces at the end of the line",
    "key-duplicates": "keep one of the two keys; YAML silently drops the first",
    "indentation": "indent consistently (InstructLab uses 2 spaces)",
    "line-length": f"wrap the line below {MAX_LINE_LENGTH} characters (use a '|' or '>' block scalar)",
    "empty-lines": "delete the extra blank lines",
    "new-line-at-end-of-file": "end the file with a newline",
    "new-lines": "save the file with Unix line endings (\\n)",
    "hyphens": "put exactly one space after '-'",
    "colons": "put no space before ':' and one space after it",
}
_HYPHEN_SPACES = re.compile(r"^( *)-( {2,})\S")


@dataclass
class ParsedYaml:
    """The parsed document and where each value sits; `data` is None when the YAML does not parse."""

    data: Any = None
    marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # path -> (line, column), 1-based
    key_marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # path -> position of its key
    problems: list[Problem] = field(default_factory=list)

    def mark(self, path: tuple) -> tuple[int, int]:
        """The position of the value at `path`, else of its nearest parent that has one."""
        while path and path not in self.marks:
            path = path[:-1]
        return self.marks.get(path, (1, 1))


class _Linter:
    def __init__(self, text: str, where: str, lint: bool):
        self.text = text
        self.where = where
        self.lint = lint
        self.result = ParsedYaml()
        self.content_lines: set[int] = set()  # 0-based lines inside multi-line scalars
        self.unit: int | None = None  # indentation unit, set by the first indented block
        self.seq_offset: int | None = None  # 0 or unit: are sequences under a key indented?

    def problem(self, rule: str, line: int, col: int, message: str, field: str = "") -> None:
        self.result.problems.append(
            Problem(
                where=f"{self.where}:{line}:{col}", rule=rule, message=message, fix=_FIX[rule], field=field
            )
        )

    def run(self) -> ParsedYaml:
        node = None
        try:
            loader = Loader(self.text)
            try:
                node = loader.get_single_node()
                if node is not None:
                    self.result.data = loader.construct_document(node)
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            if "\t" in (exc.problem or ""):
                self.problem("tabs", line, col, "found a tab character where YAML expects indentation")
            else:
                self.problem("syntax", line, col, f"syntax error: {exc.problem or exc}")
            node = None
            self.result.data = None
        if node is not None:
            if self.lint and node.start_mark.column != 0 and isinstance(node, yaml.MappingNode):
                self.problem(
                    "indentation",
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                    f"wrong indentation: expected 0 but found {node.start_mark.column}",
                )
            self.walk(node, ())
        if self.lint:
            self.check_lines(parsed=node is not None)
        self.result.problems.sort(key=lambda p: _position(p.where))
        return self.result

    def walk(self, node: yaml.Node, path: tuple) -> None:
        self.result.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.end_mark.line > node.start_mark.line:
                last = node.end_mark.line if node.end_mark.column > 0 else node.end_mark.line - 1
                self.content_lines.update(range(node.start_mark.line + 1, last + 1))
            return
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i))
            return
        seen: dict[Any, int] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.start_mark)
            here = (*path, key)
            self.result.key_marks[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                self.problem(
                    "key-duplicates",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    f'duplication of key "{key}" in mapping (first at line {seen[key]})',
                    field=_dotted(here),
                )
            else:
                seen[key] = key_node.start_mark.line + 1
            if self.lint and not node.flow_style:
                self.check_key(key_node, value, _dotted(here))
            self.walk(value, here)

    def check_key(self, key: yaml.Node, value: yaml.Node, field: str) -> None:
        kcol = key.start_mark.column
        line = self.text_line(key.end_mark.line)
        if isinstance(key, yaml.ScalarNode) and key.end_mark.line == key.start_mark.line:
            rest = line[key.end_mark.column :]
            gap = len(rest) - len(rest.lstrip(" "))
            if gap and rest[gap : gap + 1] == ":":
                self.problem(
                    "colons",
                    key.end_mark.line + 1,
                    key.end_mark.column + 1,
                    "too many spaces before colon",
                    field,
                )
            colon = key.end_mark.column + gap
            if value.start_mark.line == key.end_mark.line and line[colon : colon + 1] == ":":
                after = value.start_mark.column - colon - 1
                if after > 1:
                    self.problem(
                        "colons", value.start_mark.line + 1, colon + 3, "too many spaces after colon", field
                    )
        if value.start_mark.line <= key.start_mark.line or getattr(value, "flow_style", False):
            return
        if isinstance(value, yaml.MappingNode):
            self.expect_indent(value, kcol, offset=None, field=field)
        elif isinstance(value, yaml.SequenceNode):
            offset = value.start_mark.column - kcol
            if self.seq_offset is None and (offset == 0 or self.unit in (None, offset)):
                self.seq_offset = offset
                if offset and self.unit is None:
                    self.unit = offset
            self.expect_indent(value, kcol, offset=self.seq_offset, field=field)

    def expect_indent(self, node: yaml.Node, parent_col: int, offset: int | None, field: str) -> None:
        actual = node.start_mark.column
        if offset is None:
            if self.unit is None and actual > parent_col:
                self.unit = actual - parent_col
            offset = self.unit
        expected = parent_col + (offset or 0)
        if actual != expected:
            self.problem(
                "indentation",
                node.start_mark.line + 1,
                actual + 1,
                f"wrong indentation: expected {expected} but found {actual}",
                field,
            )

    def text_line(self, index: int) -> str:
        if not hasattr(self, "_lines"):
            self._lines = self.text.split("\n")
        return self._lines[index] if index < len(self._lines) else ""

    def check_lines(self, parsed: bool) -> None:
        text = self.text
        if not text:
            return
        if "\r" in text:
            self.problem(
                "new-lines", 1, len(text.split("\n", 1)[0]), "wrong new line character: expected \\n"
            )
        if not text.endswith("\n"):
            lines = text.split("\n")
            self.problem(
                "new-line-at-end-of-file",
                len(lines),
                len(lines[-1]) + 1,
                "no new line character at the end of file",
            )
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        self._lines = lines
        blank_run = 0
        tab_reported = {_position(p.where)[0] for p in self.result.problems if p.rule == "tabs"}
        for i, raw in enumerate(lines):
            line = raw.rstrip("\r")
            n = i + 1
            if not line.strip():
                blank_run += 1
            else:
                if blank_run > MAX_BLANK_LINES:
                    self.problem(
                        "empty-lines", n - 1, 1, f"too many blank lines ({blank_run} > {MAX_BLANK_LINES})"
                    )
                blank_run = 0
            stripped = line.rstrip()
            if stripped != line:
                self.problem("trailing-spaces", n, len(stripped) + 1, "trailing spaces")
            if len(line) > MAX_LINE_LENGTH and not _non_breakable(line):
                self.problem(
                    "line-length",
                    n,
                    MAX_LINE_LENGTH + 1,
                    f"line too long ({len(line)} > {MAX_LINE_LENGTH} characters)",
                )
            if i in self.content_lines and parsed:
                continue
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent and n not in tab_reported:
                self.problem("tabs", n, indent.index("\t") + 1, "found a tab character in the indentation")
            match = _HYPHEN_SPACES.match(line)
            if match and parsed:
                self.problem("hyphens", n, len(match.group(1)) + 2, "too many spaces after hyphen")
        if blank_run:
            self.problem("empty-lines", len(lines), 1, f"too many blank lines ({blank_run} > 0)")


def _non_breakable(line: str) -> bool:
    """yamllint's allow-non-breakable-words / -inline-mappings: a long URL or word may stay on one line."""
    rest = line.lstrip(" ")
    if rest.startswith("- "):
        rest = rest[2:].lstrip(" ")
    if " " not in rest:
        return True
    key, sep, value = rest.partition(": ")
    return bool(sep) and " " not in key and " " not in value.strip()


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _position(where: str) -> tuple[int, int]:
    parts = where.rsplit(":", 2)
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return 0, 0


def parse_yaml(text: str, where: str, *, lint: bool = True) -> ParsedYaml:
    """Parse `text`; with `lint`, also report InstructLab's yamllint style problems (located at `where`)."""
    return _Linter(text, where, lint).run()


def dotted(path: tuple) -> str:
    """`("seed_examples", 0, "question")` -> `seed_examples[0].question`, the field path shown to people."""
    return _dotted(path)
