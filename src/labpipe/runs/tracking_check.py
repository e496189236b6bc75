"""Fail fast on an MLflow that is not there: one line in seconds, before a command reads anything from it.

MLflow's client retries an unreachable server for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES with back-off: ~4 min
for `labpipe runs --tracking-uri http://host:9`), and opening `sqlite:///missing.db` quietly creates an empty
database (then "no pipeline runs"). `require_tracking(uri)` makes preflight's one authenticated read
(`tracking.server_problem`: unreachable, 401, 403 and a missing workspace each said as such) with MLflow's own
retry and timeout settings bounded for that call (`bounded_requests`, which preflight uses too; a user's explicit
settings win), and refuses a local store that does not exist.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from labpipe.errors import Problem, UserError

PROBE_TIMEOUT_S = 5
FIX = "check --tracking-uri (or MLFLOW_TRACKING_URI); `labpipe run` keeps its store at <workdir>/mlflow.db"


@contextmanager
def bounded_requests(timeout_s: float = PROBE_TIMEOUT_S, retries: int = 0):
    """MLflow's client with `retries` retries and `timeout_s` per request, unless the user set these variables
    themselves: a dead server fails in seconds, not after the client's minutes of back-off."""
    bounded = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
               "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout_s)))}  # fmt: skip
    saved = {k: os.environ.get(k) for k in bounded}
    os.environ.update({k: v for k, v in bounded.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (sqlite:///x.db, file:///dir, a plain path); None for a server."""
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:")
        path = rest[3:] if rest.startswith("///") else ""  # sqlite:///rel.db, sqlite:////abs/x.db
        return Path(path) if path and path != ":memory:" else None
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file:").removeprefix("//"))
    if "://" not in uri:
        return Path(uri)
    return None


def require_tracking(uri: str) -> None:
    """UserError (one line) unless the MLflow tracking store at `uri` exists and answers."""
    local = local_store_path(uri)
    if local is not None:
        if not local.exists():
            raise UserError(
                Problem(
                    where=uri,
                    rule="mlflow",
                    field="tracking_uri",
                    message=f"no MLflow store at {local.absolute()}",
                    fix=FIX,
                )
            )
        return
    from labpipe.runs.tracking import server_problem

    try:
        with bounded_requests():
            found = server_problem(uri)
    except Exception as exc:  # outside MLflow's own errors (requests'): still "no usable server there"
        said = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        found = (f"the MLflow server does not answer at {uri} ({said})", "check the URL and that the server is up")
    if found is not None:
        message, fix = found
        raise UserError(Problem(where=uri, rule="mlflow", field="tracking_uri", message=message, fix=f"{fix}; {FIX}"))


FINALIZE_RETRIES, FINALIZE_TIMEOUT_S = 3, 10  # an exit task rides out a blip (~15 s of back-off), not minutes


def finalize_pipeline_run(pipeline_run_id: str, tracking_uri: str, status: dict) -> dict:
    """The exit task's close of the pipeline's MLflow run, with MLflow's retries bounded: a server that stays
    unreachable (or refuses the token) fails the task in seconds with one line naming it, not after MLflow's
    minutes of back-off and a traceback. A local store is not probed (the first stage may not have made it)."""
    from labpipe.runs.tracking import finalize_from_kfp_status

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    with bounded_requests(timeout_s=FINALIZE_TIMEOUT_S, retries=FINALIZE_RETRIES):
        if uri and local_store_path(uri) is None:
            require_tracking(uri)
        return finalize_from_kfp_status(pipeline_run_id, tracking_uri, status)
