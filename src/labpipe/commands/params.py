"""One parser for `--param KEY=VALUE`, from the pipeline's declared parameter types.

`labpipe run`, `submit`, `schedule` and `preflight` all parse through here, before anything is built, started
or sent: an int is accepted for a float, booleans in the usual spellings, a string stays a string (`123` as
a ref is not a number), dicts and lists are JSON. A value of the wrong type is one line naming the
parameter, its type and an example, never KFP's InconsistentTypeException after the run started.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

from labpipe.errors import Problem, UserError

TRUE = ("true", "yes", "y", "on", "1")
FALSE = ("false", "no", "n", "off", "0")
_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean (true/false)",
    dict: "a JSON object",
    list: "a JSON list",
}


def declared_parameters() -> dict[str, tuple[type, Any]]:
    """Pipeline parameter name -> (declared type, default; inspect.Parameter.empty when required), from the
    run configuration (labpipe.runconfig.RunConfig) and the compiled pipeline's defaults (the pinned training
    image)."""
    from labpipe.pipelines.lab_pipeline import pipeline_parameters
    from labpipe.runconfig import parameters

    defaults = pipeline_parameters()
    return {p.name: (p.type, defaults.get(p.name, p.default)) for p in parameters()}


def _example(name: str, kind: type, default: Any) -> str:
    if default is not inspect.Parameter.empty and default not in ("", None, {}, []):
        value = (
            json.dumps(default) if kind in (dict, list) else str(default).lower() if kind is bool else default
        )
    else:
        value = {int: 1, float: 0.5, bool: "true", dict: '{"key": "value"}', list: "[]"}.get(kind, "...")
    if kind is float and isinstance(value, float) and value.is_integer():
        value = f"{value:g}" if value else "0.5"
    return f"--param {name}={value}"


def convert(name: str, raw: str, kind: type, default: Any = inspect.Parameter.empty) -> Any:
    """`raw` as the declared `kind`; UserError (one located problem) when it is not one."""
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text, 10)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind in (dict, list):
            value = json.loads(text)
            if not isinstance(value, kind):
                raise ValueError
            return value
    except ValueError:
        raise UserError(
            Problem(
                where=f"--param {name}",
                rule="param-type",
                field=name,
                message=f"{raw!r} is not {_TYPE_WORDS.get(kind, kind.__name__)} ({name} is {kind.__name__})",
                fix=f"e.g. {_example(name, kind, default)}",
            )
        ) from None
    return raw


def parse_params(pairs: list[str], declared: dict[str, tuple[type, Any]] | None = None) -> dict[str, Any]:
    """`KEY=VALUE` pairs as typed pipeline arguments; every problem at once (unknown names, wrong types)."""
    params, problems = parse_all(pairs, declared)
    if problems:
        raise UserError(problems)
    return params


def parse_all(
    pairs: list[str], declared: dict[str, tuple[type, Any]] | None = None
) -> tuple[dict[str, Any], list[Problem]]:
    """The pairs that parse, typed, and a problem for each one that does not (for checks that go on)."""
    declared = declared_parameters() if declared is None else declared
    params: dict[str, Any] = {}
    problems: list[Problem] = []
    unknown: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(
                Problem(
                    where=f"--param {pair!r}",
                    rule="param-syntax",
                    message="expected KEY=VALUE",
                    fix="e.g. --param max_questions=10",
                )
            )
        elif key not in declared:
            unknown.append(key)
        else:
            try:
                params[key] = convert(key, value, *declared[key])
            except UserError as err:
                problems += err.problems
    if unknown:
        problems.insert(
            0,
            Problem(
                where="--param",
                rule="param-unknown",
                message=f"unknown pipeline parameter(s): {', '.join(sorted(unknown))}",
                fix=f"known parameters: {', '.join(sorted(declared))}",
            ),
        )
    return params, problems
