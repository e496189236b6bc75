"""`labpipe run`'s up-front checks: the part of preflight that needs no cluster, in seconds, before a model is
built or the DAG starts (a taxonomy path typo, a missing or broken --base-model, an unreachable teacher or
judge, a base ref that does not exist, values out of range). Every problem at once, each with its fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError

ENDPOINT_TIMEOUT_S = 5.0


def check_before_run(params: dict[str, Any], *, tiny_base_model: bool) -> None:
    """Raise one UserError with every problem of a local run's arguments (`params`: typed, as for the DAG)."""
    from labpipe import preflight, storage
    from labpipe.taxonomy import gitrepo

    report = preflight.Report()
    preflight.check_static({**params, **({"base_model": "tiny"} if tiny_base_model else {})}, report)
    taxonomy = str(params.get("taxonomy") or "")
    if (
        taxonomy
        and not Path(taxonomy.removeprefix("file://")).is_dir()
        and not gitrepo.is_remote_url(taxonomy)
    ):
        report.problems.append(
            Problem(
                where=f"--taxonomy {taxonomy}",
                rule="taxonomy",
                field="taxonomy",
                message=f"no such directory ({Path(taxonomy).absolute()})",
                fix="check the path: a local taxonomy is a folder (a git work tree to diff against --base)",
            )
        )
    for role in ("base_model", "teacher", "judge"):
        value = str(params.get(role) or "")
        if not value or (role == "base_model" and tiny_base_model) or storage.is_s3(value):
            continue  # s3:// needs the data connection: the pipeline's own preflight task checks it
        if value.startswith(("http://", "https://")):
            preflight.check_endpoint(role, params, report, ENDPOINT_TIMEOUT_S)
        else:
            preflight.check_model_dir(role, value, report)
    tracking_uri = str(params.get("mlflow_tracking_uri") or "")
    if tracking_uri.startswith(("http://", "https://")):  # not there: seconds here, not minutes in every task
        from labpipe.runs.tracking_check import require_tracking

        try:
            require_tracking(tracking_uri)
        except UserError as err:
            report.problems += [replace(p, where="parameter mlflow_tracking_uri") for p in err.problems]
    if report.problems:
        flag = {
            "base_model": "--base-model",
            "teacher": "--teacher",
            "judge": "--judge",
            "taxonomy": "--taxonomy",
        }
        raise UserError([_as_flag(p, flag) for p in report.problems])


def _as_flag(problem: Problem, flags: dict[str, str]) -> Problem:
    """`parameter base_model` -> `--base-model`: name what the user typed."""
    if problem.field in flags and problem.where == f"parameter {problem.field}":
        return replace(problem, where=flags[problem.field])
    return problem
