"""Issue 20, item 11: every option has help and shows its default; CLI names match the pipeline's parameter names
(the old spellings stay as aliases); `compile` never writes into the installed package."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from labpipe.cli import build_parser


def _options():
    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])
            elif action.option_strings and action.dest != "help":
                yield " ".join(path), parser, action

    return list(walk(build_parser(), ["labpipe"]))


def test_every_option_has_help_and_shows_its_default():
    missing, hidden = [], []
    for command, parser, action in _options():
        if not action.help:
            missing.append(f"{command} {action.option_strings[0]}")
            continue
        meaningful = not (action.default is None or action.default is False or action.default in ("", []))
        if meaningful and not action.required:
            text = parser.formatter_class(prog="x")._get_help_string(action) % {"default": action.default}
            if "default" not in text.lower():
                hidden.append(f"{command} {action.option_strings[0]}")
    assert missing == [] and hidden == []


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (["evaluate", "gate", "--metrics", "m", "--out", "o", "--gate-tolerance", "0.5"], "tolerance", 0.5),
        (["evaluate", "gate", "--metrics", "m", "--out", "o", "--tolerance", "0.5"], "tolerance", 0.5),
        (
            ["critique", "--in", "g", "--out", "o", "--judge", "j", "--critique-profile", "smoke"],
            "profile",
            "smoke",
        ),
        (["critique", "--in", "g", "--out", "o", "--judge", "j", "--profile", "smoke"], "profile", "smoke"),
        (
            ["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--no-generation-gate"],
            "no_gate",
            True,
        ),
        (["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--no-gate"], "no_gate", True),
        (
            ["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--request-timeout-s", "300"],
            "timeout",
            300.0,
        ),
        (["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--timeout", "300"], "timeout", 300.0),
        (
            ["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--generation-cache", "off"],
            "cache",
            "off",
        ),
        (["generate", "--seeds", "s", "--out", "o", "--teacher", "t", "--cache", "off"], "cache", "off"),
        (
            [
                "train",
                "--phase",
                "skills",
                "--model",
                "m",
                "--data",
                "d",
                "--out",
                "o",
                "--training-preset",
                "lab",
            ],
            "preset",
            "lab",
        ),
    ],
)
def test_pipeline_names_and_old_spellings_both_work(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_compile_writes_here_outside_a_checkout(tmp_path, monkeypatch):
    from labpipe.pipelines.runner import default_compile_out

    from labpipe.paths import pipelines_dir

    monkeypatch.chdir(tmp_path)
    assert default_compile_out() == tmp_path / "lab_pipeline.yaml"
    monkeypatch.chdir(Path(pipelines_dir()).parent)
    assert default_compile_out() == pipelines_dir() / "lab_pipeline.yaml"


def test_integer_defaults_print_as_integers():
    from tests.support.compiled import compiled_text

    text = compiled_text()
    assert "#    chunk_tokens: int [Default: 1000]" in text and "int [Default: 1000.0]" not in text


def test_every_compiled_parameter_has_a_description():
    from tests.support.compiled import pipeline_spec

    spec = pipeline_spec()
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert [name for name, p in parameters.items() if not p.get("description")] == []
    assert parameters["seed"]["defaultValue"] == 42 and isinstance(parameters["seed"]["defaultValue"], int)


def _documented_commands() -> list[str]:
    import re

    repo = Path(__file__).resolve().parents[2]
    text = "".join(p.read_text() for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))])
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("labpipe "):
                line = re.sub(r"\s+#.*$", "", line)  # a trailing comment
                line = re.sub(r"\[[^\]]*\]", "", line)  # [optional] parts
                commands.append(re.sub(r"<[^>]*>", "x", line).replace("…", "x"))  # placeholders
    return commands


def test_every_documented_command_parses_with_real_options_and_parameters():
    """Item 11: README and docs re-checked command by command (options that exist, parameters that exist and
    have the type given)."""
    import shlex

    from labpipe.commands.params import parse_all

    commands = _documented_commands()
    assert len(commands) > 20
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"does not parse: {command}")
        _, problems = parse_all(getattr(args, "param", None) or [])
        assert problems == [], (command, [str(p) for p in problems])
