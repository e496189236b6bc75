"""`labpipe runs`: recent pipeline runs with what they did (from the KFP API with --host, else MLflow)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from labpipe.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("runs", help="recent pipeline runs: status, taxonomy commit, leaves, requests, gate, version")
    p.add_argument("--host", help="pipeline server URL: list the runs it knows (else: the runs MLflow recorded)")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    p.add_argument("--experiment", help="only runs of this KFP experiment (name)")
    p.add_argument("--token-env", default="KFP_TOKEN", help="variable holding the bearer token (default KFP_TOKEN)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for the details (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--limit", type=int, default=10, help="how many runs, newest first (default 10)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from labpipe.runs import history

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        from labpipe.runs.tracking_check import require_tracking

        require_tracking(uri)
    if args.host:
        rows = kfp_runs(args.host, namespace=args.namespace, experiment=args.experiment, token_env=args.token_env,
                        limit=args.limit, tracking_uri=uri)
    elif uri:
        rows = history.recent_runs(uri, args.limit)
    else:
        raise UserError("say where runs are recorded", fix="pass --host (pipeline server) or --tracking-uri "
                                                           "(or set MLFLOW_TRACKING_URI)")
    print(json.dumps(rows, indent=2) if args.json else history.format_runs(rows))
    return 0


def kfp_runs(host: str, *, namespace: str | None, experiment: str | None, token_env: str, limit: int,
             tracking_uri: str) -> list[dict[str, Any]]:
    """The pipeline server's newest runs; each filled in from MLflow's records of it when a URI is known."""
    from labpipe.pipelines.runner import kfp_client, talking_to
    from labpipe.runs import history

    client = kfp_client(host, namespace, token_env)
    with talking_to(host, token_env):
        experiment_id = client.get_experiment(experiment_name=experiment, namespace=namespace).experiment_id \
            if experiment else None
        response = client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id,
                                    namespace=namespace)
    rows = []
    for run in response.runs or []:
        tags = history.pipeline_run_tags(tracking_uri, run.run_id) if tracking_uri else {}
        created = run.created_at.strftime("%Y-%m-%d %H:%M") if run.created_at else ""
        rows.append({"pipeline_run_id": run.run_id, "name": run.display_name or "", "status": run.state or "",
                     "started": created, **history.run_summary(tags)})
    return rows
