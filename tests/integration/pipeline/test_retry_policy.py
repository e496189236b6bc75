"""KFP retries only what a retry can fix, through kfp.local with the real generation component.

kfp.local retries a failed task as KFP does (kfp 2.17.0, kfp/local/orchestrator/task_executor.py: the same
task re-run up to `max_retry_count` times after the backoff; on a cluster the backend compiles the same
RetryPolicy to an Argo retryStrategy with only `limit` and `backoff`, kubeflow/pipelines
backend/src/v2/compiler/argocompiler, so neither can tell a deterministic failure from a transient one).
The teacher is the fake OpenAI-compatible server, because the point is labpipe's behaviour under faults:
- a deterministic fault (every prompt is longer than the server's context): the first attempt sends its
  requests and fails; each retried attempt ends at once with the same problem and sends nothing;
- a transient fault (every request answered 503): every attempt tries again, as a retry can fix it.
"""

from pathlib import Path

import pytest

from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, Reply

pytestmark = pytest.mark.integration
RETRIES = 3


def _run(root: Path, taxonomy: Path, url: str) -> str:
    """taxonomy diff -> seed extraction -> synthetic generation (retried); the error kfp.local reports."""
    from kfp import dsl, local
    from labpipe.components.seed_extraction.component import seed_extraction
    from labpipe.components.synthetic_generation.component import synthetic_generation
    from labpipe.components.taxonomy_diff.component import taxonomy_diff

    @dsl.pipeline(name="retry-policy")
    def pipeline(taxonomy: str, teacher: str):
        diff = taxonomy_diff(taxonomy=taxonomy, taxonomy_ref="", base="empty", run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                             tracking_uri="")  # fmt: skip
        seeds = seed_extraction(diff=diff.outputs["diff"], tokenizer="", chunk_tokens=200, shards=1,
                                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri="")  # fmt: skip
        gen = synthetic_generation(seeds=seeds.outputs["seeds"], teacher=teacher, teacher_model="", teacher_secret="",
                                   concurrency=4, max_retries=0, gate=False, generation_cache="off",
                                   run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, tracking_uri="")  # fmt: skip
        gen.set_retry(num_retries=RETRIES, backoff_duration="0s")
        for task in (diff, seeds, gen):
            task.set_caching_options(False)

    root.mkdir(parents=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    with pytest.raises(RuntimeError) as err:
        pipeline(taxonomy=str(taxonomy), teacher=url)
    return str(err.value)


def test_a_deterministic_failure_is_not_retried_and_a_transient_one_is(tmp_path, monkeypatch, capfd):
    from labpipe.taxonomy.sample import prepare_sample_taxonomy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LABPIPE_CACHE", str(tmp_path / "cache"))
    taxonomy = prepare_sample_taxonomy(tmp_path / "sample")

    def too_long(request, attempt):
        return Reply(400, {"error": {"message": "This model's maximum context length is 64 tokens. However, your "
                                                "messages resulted in 900 tokens.", "type": "invalid_request_error"}})  # fmt: skip

    with FakeOpenAIServer(faults=FaultPlan(hook=too_long)) as server:
        _run(tmp_path / "deterministic", taxonomy, server.base_url)
        deterministic = server.total_requests
    logs = "".join(capfd.readouterr())  # kfp.local streams the tasks' output
    assert deterministic > 0
    assert (
        logs.count("an earlier attempt of task synthetic_generation failed") == RETRIES
    )  # each retry: at once
    assert logs.count("requests failed after all retries") == 1 + RETRIES  # the same problem, no new one

    def unavailable(request, attempt):
        return Reply(503, {"error": {"message": "service unavailable", "type": "server_error"}})

    with FakeOpenAIServer(faults=FaultPlan(hook=unavailable)) as server:
        _run(tmp_path / "transient", taxonomy, server.base_url)
        transient = server.total_requests
    logs = "".join(capfd.readouterr())  # kfp.local streams the tasks' output
    assert "an earlier attempt of task" not in logs
    assert transient >= (1 + RETRIES) * 2  # every attempt asked the server again
