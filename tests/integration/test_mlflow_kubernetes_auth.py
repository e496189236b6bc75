"""OpenShift AI's MLflow authenticates each request with the caller's Kubernetes token, routes it to the
project's workspace (X-MLFLOW-WORKSPACE) and authorizes it with Kubernetes RBAC on `mlflow.kubeflow.org`
pseudo-resources. Tested against the platform's own authorization plugin: a real `mlflow server
--app-name kubernetes-auth --workspace-store-uri kubernetes://` (mlflow-kubernetes-plugins 2.1.0 from PyPI;
source: opendatahub-io/mlflow-kubernetes-plugins, started as opendatahub-io/mlflow-operator main's chart
starts it), whose SelfSubjectAccessReviews the fake Kubernetes API answers from the RBAC in manifests/
(tests/support/platform_mlflow.py). labpipe's side is MLflow's own client with
MLFLOW_TRACKING_AUTH=kubernetes-namespaced (mlflow[kubernetes]), reading the pod's service-account files.

- `labpipe preflight` and everything else that talks to MLflow (stage runs, datasets, lineage, publish,
  the gate's production lookup, `labpipe runs`, the report, finalize) gets through as the pipeline's
  service account, which manifests/ binds to the Role labpipe-mlflow;
- without the auth provider (no token), or with `kubernetes` (a token but no workspace header), MLflow
  refuses and preflight says why;
- another service account of the same project (no labpipe-mlflow binding) is refused (403).
"""

from __future__ import annotations

import json
import uuid

import pytest

from labpipe.cli import main
from labpipe.errors import UserError
from labpipe.evaluation.gate import GateConfig, production_score, run_gate
from labpipe.preflight import PreflightConfig, run_preflight
from labpipe.registry.publish import publish_model
from labpipe.runs import history, lineage, tracking
from labpipe.taxonomy.sample import prepare_sample_taxonomy
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.platform_mlflow import NAMESPACE, OTHER_TOKEN, PIPELINE_SA, PIPELINE_TOKEN, platform_mlflow

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with platform_mlflow(tmp_path_factory.mktemp("platform-mlflow")) as pm:
        yield pm


@pytest.fixture(autouse=True)
def _no_workspace_left_behind():
    yield
    # MLflow's kubernetes-namespaced provider makes the workspace the process's active one (a ContextVar and
    # MLFLOW_WORKSPACE): later tests talk to servers without workspaces
    from mlflow.utils.workspace_context import set_workspace

    set_workspace(None)


def as_account(
    monkeypatch, platform, token: str, auth: str = "kubernetes-namespaced", namespace: str = NAMESPACE
) -> None:
    """Run as the pod of service account `token`: its service-account files where the provider reads them."""
    import mlflow.tracking.request_auth.kubernetes_request_auth_provider as provider

    folder = platform.service_account_files(token, namespace)
    monkeypatch.setattr(provider, "_SERVICE_ACCOUNT_TOKEN_PATH", folder / "token")
    monkeypatch.setattr(provider, "_SERVICE_ACCOUNT_NAMESPACE_PATH", folder / "namespace")
    if provider._file_cache is not None:
        provider._file_cache.clear()
    if auth:
        monkeypatch.setenv("MLFLOW_TRACKING_AUTH", auth)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)


def test_preflight_reaches_the_platform_mlflow(
    platform, monkeypatch, capsys, shared_data, tiny_model, tmp_path
):
    as_account(monkeypatch, platform, PIPELINE_TOKEN)
    taxonomy = prepare_sample_taxonomy(tmp_path / "repos")  # the required parameters, so that all else passes
    seen = len(platform.rbac.reviews)
    with FakeOpenAIServer(model="teacher") as server:  # the other checks need endpoints and data to pass
        code = main(
            [
                "preflight",
                "--param",
                f"taxonomy={taxonomy}",
                "--param",
                f"base_model={tiny_model}",
                "--param",
                f"mlflow_tracking_uri={platform.url}",
                "--param",
                "production_model_name=labpipe-model",
                "--param",
                "base=empty",
                "--param",
                f"teacher={server.base_url}",
                "--param",
                "teacher_model=teacher",
                "--param",
                f"judge={server.base_url}",
                "--param",
                "judge_model=teacher",
                "--param",
                f"questions={shared_data / 'mt_bench'}",
            ]
        )
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    reviews = platform.rbac.reviews[seen:]
    assert reviews and all(
        r["user"] == f"system:serviceaccount:{NAMESPACE}:{PIPELINE_SA}"
        and r["allowed"]
        and r["namespace"] == NAMESPACE
        for r in reviews
    )
    assert {(r["resource"], r["verb"]) for r in reviews} >= {
        ("experiments", "get"),
        ("registeredmodels", "get"),
    }


@pytest.mark.parametrize(
    "auth, said",
    [
        ("", "unauthenticated (HTTP 401; sent with no credentials)"),
        ("kubernetes", "Workspace context is required"),  # the token without X-MLFLOW-WORKSPACE
    ],
)
def test_preflight_says_which_header_is_missing(platform, monkeypatch, auth, said):
    as_account(monkeypatch, platform, PIPELINE_TOKEN, auth=auth)
    with pytest.raises(UserError) as err:
        run_preflight(PreflightConfig(params={"mlflow_tracking_uri": platform.url}))
    problems = [p for p in err.value.problems if p.field == "mlflow_tracking_uri"]
    assert len(problems) == 1 and said in problems[0].message, problems
    assert "kubernetes-namespaced" in problems[0].fix


def test_everything_that_talks_to_mlflow_gets_through(platform, monkeypatch, tmp_path):
    as_account(monkeypatch, platform, PIPELINE_TOKEN)
    uri, pid, name = platform.url, f"kfp-{uuid.uuid4().hex[:8]}", f"labpipe-model-{uuid.uuid4().hex[:6]}"
    seen = len(platform.rbac.reviews)
    diff = tmp_path / "diff.json"
    diff.write_text('{"leaves": []}')
    with tracking.maybe_stage_run("taxonomy_diff", pipeline_run_id=pid, tracking_uri=uri) as run:
        run.log_metrics({"leaves": 1})
    lineage.record(
        "taxonomy_diff",
        {"leaves_changed": 1},
        pipeline_run_id=pid,
        tracking_uri=uri,
        outputs={"diff": str(diff)},
    )
    assert production_score(name, uri)[0] is None  # nothing published yet: compared with the base only
    decision = {
        "publish": True,
        "reasons": ["candidate 6.5 beats base 5.0"],
        "candidate": 6.5,
        "base": 5.0,
        "candidate_scores": {"overall": 6.5},
    }
    (tmp_path / "decision.json").write_text(json.dumps(decision))
    version = publish_model(
        str(tmp_path / "model"),
        str(tmp_path / "decision.json"),
        name,
        run_id=pid,
        tracking_uri=uri,
        source_uri="s3://labpipe/sft-2/model",
    )
    lineage.record(
        "publish_model",
        {"registered_model": name, "version": version, "alias": "production"},
        pipeline_run_id=pid,
        tracking_uri=uri,
    )
    assert production_score(name, uri)[0] == 6.5
    closed = tracking.close_pipeline_run(uri, pid, state="SUCCEEDED")  # finalize
    assert closed["status"] == "FINISHED"
    described = lineage.describe_any(uri, f"{name}@production")
    assert described.pipeline_run_id == pid and described.status == "FINISHED"
    assert any(row["pipeline_run_id"] == pid for row in history.recent_runs(uri, 5))  # `labpipe runs`
    from labpipe.runs.report import collect

    assert [s.name for s in collect(uri, pipeline_run_id=pid).stages] == ["taxonomy_diff", "publish_model"]
    reviews = platform.rbac.reviews[seen:]
    assert all(r["allowed"] and r["user"].endswith(f":{PIPELINE_SA}") for r in reviews)
    checked = {(r["resource"], r["verb"]) for r in reviews}
    assert {
        ("experiments", "create"),
        ("experiments", "update"),
        ("registeredmodels", "create"),
        ("registeredmodels", "update"),
    } <= checked, checked


def test_a_service_account_without_labpipes_rbac_is_refused(platform, monkeypatch):
    as_account(monkeypatch, platform, OTHER_TOKEN)
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        with tracking.maybe_stage_run(
            "taxonomy_diff", pipeline_run_id="kfp-refused", tracking_uri=platform.url
        ):
            pass
    with pytest.raises(UserError, match="HTTP 403"):  # the gate never falls back to "compared with base only"
        production_score("labpipe-model", platform.url)
    with pytest.raises(UserError) as err:
        run_preflight(PreflightConfig(params={"mlflow_tracking_uri": platform.url}))
    problem = next(p for p in err.value.problems if p.field == "mlflow_tracking_uri")
    assert "HTTP 403" in problem.message and "labpipe-mlflow" in problem.fix
    assert platform.rbac.reviews[-1] == {
        **platform.rbac.reviews[-1],
        "user": f"system:serviceaccount:{NAMESPACE}:default",
        "allowed": False,
    }


@pytest.mark.parametrize(
    "token, auth, namespace, said",
    [
        (OTHER_TOKEN, "kubernetes-namespaced", NAMESPACE, "HTTP 403"),  # no labpipe-mlflow binding
        (
            "token-nobody-issued",
            "kubernetes-namespaced",
            NAMESPACE,
            "HTTP 401",
        ),  # a token the cluster refuses
        (PIPELINE_TOKEN, "", NAMESPACE, "HTTP 401"),  # no token sent
        # the pod's namespace is no MLflow workspace: RESOURCE_DOES_NOT_EXIST, but not "no production model"
        (PIPELINE_TOKEN, "kubernetes-namespaced", "not-a-project", "Workspace 'not-a-project' not found"),
    ],
)
def test_the_gate_fails_when_mlflow_refuses(platform, monkeypatch, tmp_path, token, auth, namespace, said):
    """The gate compares with the base only when MLflow says there is no production model, never when it
    refuses to say: the run fails, naming the refusal, and writes no decision."""
    as_account(monkeypatch, platform, token, auth=auth, namespace=namespace)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "candidate": "candidate",
                "base": "base",
                "scores": {"candidate": {"overall": 7.0}, "base": {"overall": 6.0}},
            }
        )
    )
    out = tmp_path / "decision.json"
    with pytest.raises(UserError) as err:
        run_gate(
            GateConfig(
                metrics=str(metrics),
                out=str(out),
                production_model_name="labpipe-model",
                tracking_uri=platform.url,
            )
        )
    [problem] = err.value.problems
    assert said in problem.message and "cannot read labpipe-model@production" in problem.message, problem
    assert problem.fix and not out.exists()


def test_a_stage_run_in_a_namespace_without_a_workspace_is_one_problem(platform, monkeypatch):
    """Creating the experiment in a workspace the platform does not have was an AttributeError traceback in
    every stage (the re-read after the refused create found nothing); now a UserError naming the refusal."""
    as_account(monkeypatch, platform, PIPELINE_TOKEN, auth="kubernetes-namespaced", namespace="not-a-project")
    with pytest.raises(UserError) as err:
        with tracking.maybe_stage_run("taxonomy_diff", pipeline_run_id="kfp-no-ws", tracking_uri=platform.url):
            pass
    [problem] = err.value.problems
    assert "not-a-project" in problem.message and problem.fix, problem
