"""The `serve` hand-off: the published model as a KServe InferenceService, through the real `kubernetes` client
over HTTP against a FAKE Kubernetes API on 127.0.0.1 (tests/support/fake_kube.py) that serves KServe's own CRDs
(../shared/data/crds, kserve/kserve @ aaac4e294d) strictly, with a stand-in for KServe's controller that writes
the status as kserve/kserve (master, pkg/apis/serving/v1beta1/inference_service_status.go) defines it: Ready =
PredictorReady + IngressReady, observedGeneration, address.url, modelStatus.lastFailureInfo. No KServe controller
or vLLM runs here: the chat goes to our FAKE OpenAI server (tests.support.fake_openai); the point is our flow
(create/update, wait for Ready with a deadline, one chat through labpipe's client, the reasons on failure, the
lineage)."""

from __future__ import annotations

import uuid

import pytest

from labpipe.errors import UserError
from labpipe.evaluation import serving
from labpipe.runs import lineage
from tests.support import crds
from tests.support.fake_kube import fake_kube_server
from tests.support.fake_openai import FakeOpenAIServer, Reply

pytestmark = pytest.mark.integration
NAME = "lab-granite"


@pytest.fixture
def crd_dir(shared_data):
    return shared_data / "crds"


@pytest.fixture
def kube(tmp_path, crd_dir):
    from kubernetes import config

    with fake_kube_server(tmp_path, crd_dir) as (fake, kubeconfig):
        yield fake, config.new_client_from_config(str(kubeconfig))


def _cfg(uri="s3://models/lab-granite/3", **kw):
    return serving.ServeConfig(name=NAME, storage_uri=uri, namespace="lab", ready_timeout_s=5, poll_s=0.02,
                               chat_timeout_s=5, **kw)  # fmt: skip


def _tracking(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}", f"run-{uuid.uuid4().hex[:8]}"


def test_the_inference_service_labpipe_builds_validates_against_kserves_crd(crd_dir):
    for cfg in (_cfg(), _cfg(runtime="vllm-cuda-runtime", service_account="models-s3", gpus=2), _cfg(gpus=0)):
        body = serving.to_body(serving.inference_service(cfg, "lab"))
        assert crds.validate(crd_dir, body) == [] and crds.unknown_fields(crd_dir, body) == []
        model = body["spec"]["predictor"]["model"]
        assert model["modelFormat"] == {"name": "vLLM"} and model["storageUri"] == cfg.storage_uri
    # the strict double refuses what the API server refuses: an unknown field with fieldValidation=Strict
    body["spec"]["predictor"]["model"]["storageURI"] = "s3://typo"
    assert crds.unknown_fields(crd_dir, body) == [".spec.predictor.model.storageURI: unknown field"]


def test_ready_inference_service_answers_one_chat_and_is_the_chains_last_step(kube, crd_dir, tmp_path):
    fake, api = kube
    uri, pid = _tracking(tmp_path)
    with FakeOpenAIServer(model=NAME) as openai:
        address = openai.base_url.removesuffix("/v1")
        fake.isvc_scenarios[NAME] = {"outcome": "ready", "after": 2, "url": address}
        served = serving.serve_and_record(_cfg(), run_id=pid, tracking_uri=uri, registered="lab-granite/3",
                                          api_client=api, emit=lambda _: None)  # fmt: skip
        assert (
            openai.total_requests == 1 and openai.requests[0]["model"] == NAME
        )  # vLLM's --served-model-name
    assert served["action"] == "created" and served["url"] == address
    assert served["revision"] == f"{NAME}-predictor-00001"
    stored = fake.objects[("inferenceservices", "lab", NAME)]
    assert crds.validate(crd_dir, stored) == []  # spec and the controller's status both as the CRD says
    assert ("POST", "/apis/serving.kserve.io/v1beta1/namespaces/lab/inferenceservices") in fake.requests

    steps = lineage.chain(lineage.describe(uri, pipeline_run_id=pid))
    assert steps[-1]["step"] == "served" and steps[-1]["data"]["ready"] is True
    assert f"InferenceService lab/{NAME} created, Ready at http://127.0.0.1" in steps[-1]["text"]
    assert steps[-1]["data"]["storage_uri"] == "s3://models/lab-granite/3"


def test_an_update_that_never_gets_ready_fails_with_kserves_reason_and_the_previous_revision_stays(
    kube, tmp_path
):
    fake, api = kube
    with FakeOpenAIServer(model=NAME) as openai:
        fake.isvc_scenarios[NAME] = {
            "outcome": "ready",
            "after": 1,
            "url": openai.base_url.removesuffix("/v1"),
        }
        serving.serve_model(_cfg(), api_client=api, emit=lambda _: None)  # revision 1 serves
        fake.isvc_scenarios[NAME] = {"outcome": "fail", "after": 1, "reason": "RevisionFailed",
                                     "message": "Revision \"lab-granite-predictor-00002\" failed with message: "
                                                "CUDA out of memory."}  # fmt: skip
        uri, pid = _tracking(tmp_path)
        lines: list[str] = []
        with pytest.raises(UserError) as err:
            serving.serve_and_record(_cfg("s3://models/lab-granite/4"), run_id=pid, tracking_uri=uri,
                                     api_client=api, emit=lines.append)  # fmt: skip
        assert openai.total_requests == 1  # no chat with a model that is not Ready
    text = str(err.value)
    assert "not Ready after 5 s" in text and "Ready=False (RevisionFailed: Revision" in text
    assert "CUDA out of memory" in text and "model: ModelLoadFailed" in text
    assert "the previous revision keeps serving" in text
    assert any("not ready: PredictorReady=False (RevisionFailed" in line for line in lines)
    stored = fake.objects[("inferenceservices", "lab", NAME)]
    assert stored["metadata"]["generation"] == 2  # the update was applied (strictly validated) ...
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://models/lab-granite/4"
    predictor = stored["status"]["components"]["predictor"]
    assert predictor["latestReadyRevision"] == f"{NAME}-predictor-00001"  # ... and revision 1 still serves
    assert predictor["latestCreatedRevision"] == f"{NAME}-predictor-00002"
    assert not fake.deleted and not any(method == "DELETE" for method, _ in fake.requests)
    step = lineage.chain(lineage.describe(uri, pipeline_run_id=pid))[-1]
    assert step["step"] == "served" and step["data"]["ready"] is False and "RevisionFailed" in step["text"]


def test_a_create_that_never_gets_ready_says_what_is_left(kube):
    fake, api = kube
    fake.isvc_scenarios[NAME] = {
        "outcome": "fail",
        "after": 0,
        "reason": "RevisionMissing",
        "message": 'Configuration "lab-granite-predictor" does not have any ready Revision.',
    }
    with pytest.raises(
        UserError, match="left in place, not Ready.*oc delete inferenceservice lab-granite -n lab"
    ):
        serving.serve_model(_cfg(), api_client=api, emit=lambda _: None)
    assert ("inferenceservices", "lab", NAME) in fake.objects


def test_ready_but_the_chat_fails_fails_the_task_with_the_reply(kube):
    fake, api = kube
    refuse = Reply(
        404,
        {
            "object": "error",
            "type": "NotFoundError",
            "code": 404,
            "message": f"The model `{NAME}` does not exist.",
        },
    )  # vLLM's words for a wrong model name
    with FakeOpenAIServer(lambda _: refuse, model=NAME) as openai:  # the name is listed: the chat is refused
        fake.isvc_scenarios[NAME] = {
            "outcome": "ready",
            "after": 0,
            "url": openai.base_url.removesuffix("/v1"),
        }
        with pytest.raises(UserError) as err:
            serving.serve_model(_cfg(), api_client=api, emit=lambda _: None)
    assert "inferenceservice-chat-failed" in str(err.value) and "does not exist" in str(err.value)
