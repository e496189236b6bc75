"""`labpipe run | compile | submit | schedule | lineage`: the whole pipeline, locally or on a cluster."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError


def register(sub) -> None:
    run = sub.add_parser("run", help="run the whole LAB pipeline locally through kfp.local (offline defaults)")
    run.add_argument("--taxonomy", help="taxonomy git work tree or URL (default: the sample taxonomy)")
    run.add_argument("--base", help="base ref for the diff, or 'empty' (default: empty for the sample, "
                                    "origin/main otherwise)")
    run.add_argument("--base-model", help="model dir or s3:// URI to fine-tune (default: a tiny model built locally)")
    run.add_argument("--teacher", help="teacher: OpenAI-compatible URL ending in /v1 or a model dir "
                                       "(default: the base model in-process)")
    run.add_argument("--teacher-model", default="", help="model name at the teacher endpoint")
    run.add_argument("--judge", help="judge: URL ending in /v1 or a model dir (default: the teacher)")
    run.add_argument("--judge-model", default="", help="model name at the judge endpoint")
    run.add_argument("--workdir", help="where this run's artifacts, logs, MLflow store and report go (default: "
                                       "runs/<timestamp>; replies, checkpoints and the tiny model are kept for "
                                       "reruns in runs/cache, or <workdir>/cache)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="any other pipeline parameter (the README's Configuration table); repeatable")
    run.add_argument("--verbose", dest="stream_logs", action="store_true",
                     help="stream kfp.local's output and every task's log (they always go to <workdir>/logs)")
    run.add_argument("--plain", action="store_true", help="one line per stage transition even on a terminal")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="one self-contained HTML page for a pipeline run (from MLflow)")
    rep.add_argument("run", metavar="RUN", help="a pipeline run id (the KFP job id) or an MLflow run id of the run")
    rep.add_argument("--out", default="report.html", help="output file or s3:// URI (default: report.html)")
    rep.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    rep.set_defaults(func=cmd_report)

    comp = sub.add_parser("compile", help="compile the pipeline to KFP IR YAML")
    comp.add_argument("--out", help="output file (default: pipelines/lab_pipeline.yaml inside a checkout, else "
                                    "./lab_pipeline.yaml; never into the installed package)")
    comp.add_argument("--images-out", metavar="DIR",
                      help="also write the kustomize Component pinning the manifests' images (the weekly CronJob) "
                           "to DIR/kustomization.yaml (default without --out: manifests/images of the checkout)")
    comp.set_defaults(func=cmd_compile)

    for name, helptext in (("submit", "submit one run to a Kubeflow / OpenShift AI pipeline server"),
                           ("schedule", "create a recurring run (e.g. weekly retraining)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", required=True, help="pipeline server URL (OpenShift AI: the ds-pipeline route)")
        p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
        p.add_argument("--experiment", default="labpipe", help="KFP experiment name")
        p.add_argument("--token-env", default="KFP_TOKEN", help="variable holding the bearer token (default KFP_TOKEN)")
        p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="pipeline parameter; repeatable (taxonomy=..., base_model=s3://... are required)")
        p.add_argument("--package", help="compiled pipeline YAML (default: the shipped pipelines/lab_pipeline.yaml); "
                                         "uploaded as a version of --pipeline-name named by its content hash")
        p.add_argument("--pipeline-name", default="labpipe", help="the pipeline the runs are listed under")
        p.add_argument("--pipeline-version", default="", choices=("", "latest"),
                       help="latest: run the newest version uploaded by `labpipe upload` instead of --package "
                            "(the weekly CronJob does)")
        p.add_argument("--preflight", choices=("params", "full", "off"), default="params",
                       help="before submitting: check the parameters (default), also reach every service "
                            "from here (full: when this machine can reach the cluster's endpoints), or not")
        if name == "submit":
            p.add_argument("--run-name", help="display name of the run (default: lab-<date>-<time>)")
            p.set_defaults(func=cmd_submit)
        else:
            p.add_argument("--cron", required=True, help="cron schedule, e.g. '0 3 * * 0' (Sundays 03:00)")
            p.add_argument("--name", default="labpipe-weekly", help="recurring run name")
            p.set_defaults(func=cmd_schedule)

    up = sub.add_parser("upload", help="create (or find) the named pipeline on a pipeline server and upload the "
                                       "compiled YAML as its version named by the content hash")
    up.add_argument("--host", required=True, help="pipeline server URL (OpenShift AI: the ds-pipeline route)")
    up.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    up.add_argument("--token-env", default="KFP_TOKEN", help="variable holding the bearer token (default KFP_TOKEN)")
    up.add_argument("--pipeline-name", default="labpipe", help="pipeline name in the dashboard (default labpipe)")
    up.add_argument("--package", help="compiled pipeline YAML (default: pipelines/lab_pipeline.yaml)")
    up.set_defaults(func=cmd_upload)

    pre = sub.add_parser("preflight", help="check a run's parameters, endpoints, S3, MLflow and data before "
                                           "running it (what the pipeline's first task does)")
    pre.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="pipeline parameter, as for submit/schedule; repeatable")
    pre.add_argument("--offline", action="store_true", help="only the checks that need no network")
    pre.add_argument("--timeout", type=float, default=10.0, help="seconds per network check (default 10)")
    pre.set_defaults(func=cmd_preflight)

    lin = sub.add_parser("lineage", help="show which taxonomy commit, data and runs produced a model")
    lin.add_argument("target", nargs="?", metavar="MODEL|RUN",
                     help="NAME@ALIAS, models:/NAME/VERSION, an MLflow run id or a pipeline run id")
    which = lin.add_mutually_exclusive_group()
    which.add_argument("--model", help="registered model as NAME@ALIAS or NAME/VERSION, e.g. labpipe-model@production")
    which.add_argument("--run", help="an MLflow run id of any stage")
    which.add_argument("--pipeline-run", help="the pipeline run id (the KFP job id)")
    lin.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    lin.add_argument("--json", action="store_true", help="print the chain as JSON")
    lin.set_defaults(func=cmd_lineage)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Typed pipeline arguments from `--param KEY=VALUE` (labpipe.commands.params: one parser for every command)."""
    from labpipe.commands.params import parse_params as parse

    return parse(pairs)


def local_arguments(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Pipeline arguments for a laptop run: the sample taxonomy and a tiny model unless told otherwise."""
    from labpipe.models.tiny import build_tiny_model

    if args.taxonomy:
        taxonomy, base = args.taxonomy, args.base or "origin/main"
    else:
        from labpipe.taxonomy.sample import prepare_sample_taxonomy

        taxonomy, base = str(prepare_sample_taxonomy(workdir / "taxonomy")), args.base or "empty"
    params = parse_params(args.param)
    from labpipe.commands.runcheck import check_before_run

    given = {"taxonomy": taxonomy, "base": base, "base_model": args.base_model or "", "teacher": args.teacher or "",
             "teacher_model": args.teacher_model, "judge": args.judge or "", "judge_model": args.judge_model}
    check_before_run({k: v for k, v in given.items() if v} | params, tiny_base_model=not args.base_model)
    validate_taxonomy_first({"taxonomy": taxonomy, "base": base, **params})  # before any model is built
    base_model = args.base_model
    if not base_model:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Writing model shards" bars above the stage view
        base_model = _tiny_model(build_tiny_model)
    teacher = args.teacher or base_model
    arguments = {
        "taxonomy": taxonomy, "base": base, "base_model": base_model,
        "teacher": teacher, "teacher_model": args.teacher_model,
    }
    if not args.base_model:
        arguments.update(SMOKE_DEFAULTS)  # the tiny model: few samples, few steps, few questions
    else:
        print(settings_note(params))
    if os.environ.get("LABPIPE_MT_BENCH_DATA"):
        arguments["questions"] = os.environ["LABPIPE_MT_BENCH_DATA"]
    arguments.update(params)
    from labpipe.commands.generation import judge_of

    arguments["judge"], arguments["judge_model"] = judge_of(  # the judge follows the teacher unless given
        args.judge or params.get("judge", ""), args.judge_model or params.get("judge_model", ""),
        arguments["teacher"], arguments["teacher_model"])
    _check_mt_bench_data(arguments.get("questions", ""))
    return arguments


def settings_note(params: dict[str, Any]) -> str:
    """With --base-model, the pipeline's own (LAB) settings apply, not the tiny model's: say so, and how to
    choose the quick ones instead."""
    lab = {k: v for k, v in SMOKE_DEFAULTS.items() if k not in params}
    if not lab:
        return "settings: as given with --param"
    flags = " ".join(f"--param {k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in lab.items())
    return ("settings: with --base-model the pipeline's LAB defaults apply (training_preset=lab, critique_profile="
            "lab, generation_gate=true, samples_per_skill_leaf=30, every MT-Bench question), not the tiny model's "
            f"quick ones; for those add {flags}")


def _tiny_model(build) -> str:
    """The default base model, built once under LABPIPE_CACHE and then reused: the same model every run, so a
    rerun's replies and checkpoints (keyed by the model's files) are found again."""
    from labpipe import storage

    path = storage.cache_dir() / "models" / "tiny"
    if (path / "config.json").is_file() and (path / storage.OUTPUT_MARKER).is_file():
        print(f"base model: the tiny random model at {path}")
    else:
        build(path)
        print(f"base model: a tiny random model built at {path}")
    return str(path)


def _check_mt_bench_data(location: str) -> None:
    """Fail before any stage runs when the MT-Bench questions cannot be had (offline, wrong path)."""
    from labpipe.evaluation.questions import load_questions

    try:
        load_questions(location)
    except UserError as err:
        raise UserError(Problem(
            where=err.problems[0].where, rule="mt-bench-data", message=err.problems[0].message,
            fix="offline, point at a local copy of FastChat's mt_bench data folder: --param questions=DIR "
                "or LABPIPE_MT_BENCH_DATA=DIR",
        )) from None


# A laptop run with the tiny model: the whole DAG in minutes on 2 CPU cores.
SMOKE_DEFAULTS: dict[str, Any] = {
    "generation_gate": False,  # a random model's question ratings would reject everything
    "critique_profile": "smoke",  # scores recorded, never dropped on; malformed and duplicates still go
    "samples_per_skill_leaf": 4,
    "training_preset": "smoke",
    "max_questions": 4,
    "max_new_tokens": 48,
}


def cmd_run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from labpipe.runs import tracking

    parse_params(args.param)  # a mistyped value: one line, before any folder or model is made
    workdir = Path(args.workdir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")).absolute()
    created = [d for d in (workdir, workdir.parent) if not d.exists()]
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri = tracking.default_tracking_uri(workdir)
    # Replies, checkpoints and the tiny model outlive the run's folder: `runs/cache` beside the timestamped
    # folders (or <workdir>/cache), so rerunning the same command reuses them.
    os.environ.setdefault("LABPIPE_CACHE", str((workdir if args.workdir else workdir.parent) / "cache"))
    # Temporary files of this process and its tasks (MLflow's SQLite locks, the KFP launcher's) stay in the run's
    # folder and go with the run.
    scratch = workdir / ".tmp"
    scratch.mkdir(exist_ok=True)
    saved_tmp = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(scratch)
    try:
        try:
            arguments = local_arguments(args, workdir)
        except BaseException:  # nothing ran: leave no empty or half-made work folder behind
            for made in created:
                shutil.rmtree(made, ignore_errors=True)
            raise
        return _run(args, arguments, workdir, tracking_uri)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        tempfile.tempdir = saved_tmp[1]
        if saved_tmp[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmp[0]


def _run(args: argparse.Namespace, arguments: dict[str, Any], workdir: Path, tracking_uri: str) -> int:
    import sys

    from labpipe.pipelines import runner
    from labpipe.runs.runview import RunView

    print(f"labpipe run: workdir {workdir}\n  MLflow: {tracking_uri}", flush=True)
    started = time.time()
    verbose = bool(getattr(args, "stream_logs", False) or getattr(args, "verbose", False))
    live = sys.stdout.isatty() and not verbose and not getattr(args, "plain", False)
    view = RunView(runner.pipeline_stages(), workdir / "logs", sys.stdout, live=live, verbose=verbose)
    report = workdir / "report.html"
    try:
        job, artifacts = runner.run_local(arguments, workdir / "kfp", view=view)
    except (UserError, KeyboardInterrupt) as exc:
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            if _finish_tracking(tracking_uri, started, "KILLED" if how == "interrupted" else "FAILED", view, report):
                print(f"report of the {how} run: {report}")
        except Exception as err:  # the task's own problems matter more than a report of them
            print(f"no report of the {how} run: {str(err).splitlines()[0][:200]}")
        if how == "failed":
            raise
        print(f"interrupted. {_what_resumes(arguments)}", file=sys.stderr)
        return 130
    pipeline_run_id = _finish_tracking(tracking_uri, started, "SUCCEEDED", view, report)
    from labpipe.runs.runview import summary_lines

    print("\n".join(summary_lines(view, artifacts, job_dir=workdir / "kfp" / job, seconds=time.time() - started,
                                  report=report if pipeline_run_id else None, pipeline_run_id=pipeline_run_id,
                                  tracking_uri=tracking_uri)))
    return 0


def _what_resumes(arguments: dict[str, Any]) -> str:
    """What a rerun of the same command really reuses (never more than the settings allow)."""
    from labpipe import storage

    kept = []
    replies = str(arguments.get("generation_cache") or "")
    if replies.lower() not in ("off", "none"):
        kept.append(f"the teacher and judge replies already received are reused ({replies or storage.cache_dir() / 'generation'})")
    if not arguments.get("checkpoint_root"):
        kept.append(f"training resumes from its last checkpoint ({storage.cache_dir() / 'checkpoints'})")
    if not kept:
        return "Nothing is kept for a rerun (generation_cache=off, checkpoints under the run's own checkpoint_root)."
    return "Rerun the same command: " + "; ".join(kept) + "."


def _finish_tracking(tracking_uri: str, started: float, status: str, view, report: Path) -> str:
    """Close the MLflow pipeline run, record the tasks' times on it, write the report; the run id or ""."""
    from labpipe.runs import tracking
    from labpipe.runs.report import write_report

    pipeline_run_id = _latest_pipeline_run(tracking_uri, started)
    if not pipeline_run_id:
        return ""
    mlflow_run_id = tracking.finish_pipeline_run(tracking_uri, pipeline_run_id, status=status)
    if mlflow_run_id:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        for stage in view.stages.values():
            client.set_tag(mlflow_run_id, f"labpipe.task.{stage.info.task}", json.dumps({
                "label": stage.info.label, "status": stage.status, "figure": stage.figure,
                "start_ms": int(stage.started * 1000) if stage.started else None,
                "end_ms": int(stage.ended * 1000) if stage.ended else None}))
    write_report(tracking_uri, str(report), pipeline_run_id=pipeline_run_id, log_to_mlflow=True)
    return pipeline_run_id


def validate_taxonomy_first(arguments: dict[str, Any]) -> None:
    """A broken leaf fails here in a second, not after the pipeline started (same checks as the diff stage)."""
    from labpipe.taxonomy.stage import _local_dir

    if arguments.get("taxonomy_ref") or _local_dir(str(arguments.get("taxonomy", ""))) is None:
        return  # a git URL or a ref: the taxonomy-diff task clones and validates it
    from labpipe.taxonomy.diff import taxonomy_diff
    from labpipe.taxonomy.validate import validate_taxonomy

    root = _local_dir(str(arguments["taxonomy"]))
    base = str(arguments.get("base") or "origin/main")
    if base == "production":  # the pipeline's default: the commit production was trained from, as the diff task
        from labpipe.taxonomy.stage import TaxonomyDiffConfig, _production_base

        name = str(arguments.get("production_model_name", "labpipe-model"))
        cfg = TaxonomyDiffConfig(taxonomy=str(root), out="", base=base, production_model_name=name,
                                 tracking_uri=str(arguments.get("mlflow_tracking_uri") or ""))
        base = _production_base(cfg, root)[0]
    diff = taxonomy_diff(root, base)
    report = validate_taxonomy(root, paths=[c.path for c in diff.changed])
    report.problems = diff.warnings + report.problems
    report.raise_for_errors()


def _latest_pipeline_run(tracking_uri: str, since: float) -> str:
    from mlflow.tracking import MlflowClient

    from labpipe.runs import tracking

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    if exp is None:
        return ""
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'pipeline'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if runs and runs[0].info.start_time >= since * 1000 - 1000:
        return runs[0].data.tags[tracking.PIPELINE_RUN_TAG]
    return ""


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_compile(args: argparse.Namespace) -> int:
    from labpipe.pipelines import runner

    print(f"compiled {runner.compile_pipeline(args.out, args.images_out)}")
    return 0


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a run gets: the pipeline's defaults, overridden by those given."""
    import inspect

    from labpipe.pipelines.lab_pipeline import pipeline_parameters

    # a required parameter not given is "" here, so that preflight reports it as required
    defaults = {k: "" if v is inspect.Parameter.empty else v for k, v in pipeline_parameters().items()}
    return {**defaults, **params}


def cmd_preflight(args: argparse.Namespace) -> int:
    from labpipe.commands.params import parse_all
    from labpipe.preflight import PreflightConfig, Report, check_static, run_preflight

    params, problems = parse_all(args.param)
    if problems:  # with the checks of the values that did parse: every problem at once
        report = Report()
        check_static(_with_defaults(params), report)
        raise UserError(problems + report.problems)
    result = run_preflight(PreflightConfig(params=_with_defaults(params), network=not args.offline,
                                           timeout=args.timeout))
    for line in result["passed"]:
        print(f"ok: {line}")
    print(f"preflight passed in {result['seconds']:.1f} s")
    return 0


def _preflight_before_submit(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from labpipe.pipelines import runner

    if args.preflight != "off":
        runner.preflight(_with_defaults(params), network=args.preflight == "full")


def cmd_submit(args: argparse.Namespace) -> int:
    from labpipe.pipelines import runner

    params = parse_params(args.param)
    _preflight_before_submit(args, params)
    run_id = runner.submit(args.host, params, experiment=args.experiment, run_name=args.run_name,
                           namespace=args.namespace, package=args.package and Path(args.package),
                           token_env=args.token_env, pipeline_name=args.pipeline_name,
                           version=args.pipeline_version)
    print(f"submitted run {run_id} to {args.host} (experiment {args.experiment})")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from labpipe.pipelines import runner

    params = parse_params(args.param)
    runner.to_kfp_cron(args.cron)  # the schedule's own mistake first: it needs no parameter
    _preflight_before_submit(args, params)
    job_id = runner.schedule(args.host, params, cron=args.cron, experiment=args.experiment,
                             name=args.name, namespace=args.namespace,
                             package=args.package and Path(args.package), token_env=args.token_env,
                             pipeline_name=args.pipeline_name, version=args.pipeline_version)
    print(f"recurring run {job_id} ({args.cron}) created on {args.host}")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from labpipe.pipelines import runner

    pipeline_id, name, version_id, uploaded = runner.upload(
        args.host, pipeline_name=args.pipeline_name, package=args.package and Path(args.package),
        namespace=args.namespace, token_env=args.token_env,
    )
    state = "uploaded" if uploaded else "already there"
    print(f"pipeline {args.pipeline_name} ({pipeline_id}): version {name} ({version_id}) {state} on {args.host}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from labpipe.runs import lineage

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UserError("no MLflow tracking server given", fix="pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if args.target and (args.model or args.run or args.pipeline_run):
        raise UserError("give MODEL|RUN or one of --model/--run/--pipeline-run, not both")
    from labpipe.runs.tracking_check import require_tracking

    require_tracking(uri)
    if args.target:
        _refuse_bare_model_name(uri, args.target)
        result = lineage.describe_any(uri, args.target)
    else:
        result = lineage.describe(uri, pipeline_run_id=args.pipeline_run or "", run_id=args.run or "",
                                  model=args.model or "")
    print(json.dumps(result.to_dict(), indent=2) if args.json else lineage.format_chain(result))
    return 0


def _refuse_bare_model_name(uri: str, target: str) -> None:
    """`lineage labpipe-model`: a registered model has versions; say which forms name one."""
    from labpipe.runs import lineage

    if lineage.parse_model_ref(target) is not None or lineage.MLFLOW_RUN_ID.fullmatch(target):
        return
    from mlflow.tracking import MlflowClient

    from labpipe.runs.tracking_check import bounded_requests

    try:
        with bounded_requests():
            model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(target)
    except Exception:  # not a registered model: a pipeline run id, looked up as before
        return
    aliases = sorted(model.aliases or {})
    examples = [f"{target}@{a}" for a in aliases] or [f"models:/{target}/1"]
    raise UserError(Problem(where=target, rule="lineage-target", message="is a registered model, not one version",
                            fix=f"name a version: {' or '.join(examples[:3])} (NAME@ALIAS or models:/NAME/VERSION)"))


def cmd_report(args: argparse.Namespace) -> int:
    from labpipe.runs.report import write_report
    from labpipe.runs.tracking_check import require_tracking

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UserError("no MLflow tracking server given", fix="pass --tracking-uri or set MLFLOW_TRACKING_URI")
    require_tracking(uri)
    run_id, pipeline_run_id = (args.run, "") if _looks_like_mlflow_run(args.run) else ("", args.run)
    data = write_report(uri, args.out, pipeline_run_id=pipeline_run_id, run_id=run_id)
    print(f"report of pipeline run {data.pipeline_run_id}: {args.out}")
    return 0


def _looks_like_mlflow_run(run: str) -> bool:
    """MLflow run ids are 32 hex digits; KFP job ids are UUIDs (with dashes) or kfp.local's short numbers."""
    return len(run) == 32 and all(c in "0123456789abcdef" for c in run)
