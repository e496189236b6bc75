"""Issue 20, item 2: `--param` values are parsed from the pipeline's declared types, once, for every command.

`--param gate_tolerance=0` (the README's default), `gate_tolerance=10`, `request_timeout_s=300` crashed
`labpipe run` with KFP's InconsistentTypeException after every stage was shown as skipped (an int for a float
parameter); `seed=1.5`, `max_steps=abc` and `generation_gate=yes` did the same; `labpipe preflight` accepted
them. Now ints are floats where a float is declared, booleans take the usual spellings, and anything else is
one line naming the parameter, its type and an example, before a model is built or a folder is made.
"""

from __future__ import annotations

import pytest

from labpipe.cli import main
from labpipe.commands.params import parse_params
from labpipe.errors import UserError


def test_values_take_the_declared_types():
    params = parse_params(
        [
            "gate_tolerance=0",
            "request_timeout_s=300",
            "seed=7",
            "generation_gate=yes",
            "force=Off",
            "taxonomy_ref=123",
            'node_selector={"gpu": "h100"}',
            "tolerations=[]",
            "questions=",
            "base_model=s3://m/g",
        ]
    )
    assert params == {
        "gate_tolerance": 0.0,
        "request_timeout_s": 300.0,
        "seed": 7,
        "generation_gate": True,
        "force": False,
        "taxonomy_ref": "123",
        "node_selector": {"gpu": "h100"},
        "tolerations": [],
        "questions": "",
        "base_model": "s3://m/g",
    }
    assert isinstance(params["gate_tolerance"], float) and isinstance(params["request_timeout_s"], float)


@pytest.mark.parametrize(
    "pair, expected",
    [
        (
            "seed=1.5",
            "--param seed: error: param-type [seed]: '1.5' is not an integer (seed is int) Fix: e.g. "
            "--param seed=42",
        ),
        ("max_steps=abc", "'abc' is not an integer (max_steps is int) Fix: e.g. --param max_steps=0"),
        (
            "generation_gate=maybe",
            "'maybe' is not a boolean (true/false) (generation_gate is bool) Fix: e.g. "
            "--param generation_gate=true",
        ),
        (
            "gate_tolerance=abc",
            "'abc' is not a number (gate_tolerance is float) Fix: e.g. --param gate_tolerance=0.5",
        ),
        ("node_selector=gpu", "'gpu' is not a JSON object (node_selector is dict)"),
    ],
)
def test_a_wrong_type_is_one_line_naming_parameter_type_and_example(pair, expected):
    with pytest.raises(UserError) as err:
        parse_params([pair])
    assert len(err.value.problems) == 1
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(UserError) as err:
        parse_params(["seed=1.5", "taxonmy=x", "max_steps=abc"])
    assert [p.rule for p in err.value.problems] == ["param-unknown", "param-type", "param-type"]


def test_run_refuses_a_bad_value_before_building_anything(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["run", "--workdir", str(workdir), "--param", "max_steps=abc"]) == 1
    err = capsys.readouterr().err
    assert "max_steps" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not workdir.exists()  # no model built, no folder left behind


@pytest.mark.parametrize(
    "command",
    [
        ["preflight", "--offline"],
        ["submit", "--host", "http://127.0.0.1:9"],
        ["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 0"],
    ],
)
def test_preflight_submit_and_schedule_use_the_same_parser(command, capsys):
    assert main([*command, "--param", "seed=1.5", "--param", "taxonomy=t", "--param", "base_model=m"]) == 1
    err = capsys.readouterr().err
    assert "'1.5' is not an integer (seed is int)" in err and "Traceback" not in err
