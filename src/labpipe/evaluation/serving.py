"""Hand-off to serving: the published model as a KServe InferenceService (vLLM runtime), checked by one chat.

`serve_model` creates the InferenceService `name` (or updates its spec when it exists), waits until KServe
reports it Ready for *this* spec, sends one chat completion through labpipe's own OpenAI client, and raises
UserError with KServe's reason (the IS's conditions, the model's last failure) or the chat's error when it
does not serve. The object is built from KServe's typed models (`kserve.models`), never a hand-built dict.

What KServe does, read in kserve/kserve (master @ 0217bdab, pkg/apis/serving/v1beta1/inference_service_status.go):
- `Ready` is the living condition set of `PredictorReady` and `IngressReady` (`conditionSet`, `IsReady()`);
  the status embeds knative's duckv1.Status, so `status.observedGeneration` says which spec it describes:
  a Ready left from the previous spec (generation) is not taken for the new one.
- `status.address.url` is the cluster-internal address (what a pipeline pod reaches), `status.url` the
  route's; `status.modelStatus.lastFailureInfo` {reason, message} says why a model did not load.
- On an update that never gets ready the previous revision keeps serving (serverless: the route keeps its
  traffic on `components.predictor.latestReadyRevision`; raw deployment: the Deployment's rolling update
  keeps the old pods until new ones are available). After a failed *create* the InferenceService is left
  in place, not Ready, for inspection: the error says so and how to delete it.

The vLLM runtime (OpenShift AI's `vllm-*-runtime` templates) serves vLLM's OpenAI API at `<url>/v1` under
`--served-model-name={{.Name}}`, the InferenceService's name: the chat is sent to that model.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from labpipe.errors import Problem, UserError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # DNS-1035 label: KServe puts the name in host names


@dataclass
class ServeConfig:
    name: str  # the InferenceService's name (a DNS-1035 label: KServe uses it in host names)
    storage_uri: str  # the published model: s3://bucket/prefix
    namespace: str = ""  # "" = the pod's namespace (or the kubeconfig context's)
    model_format: str = (
        "vLLM"  # the format the vLLM ServingRuntimes declare (KServe picks one that supports it)
    )
    runtime: str = ""  # a ServingRuntime name to pin; "" = KServe's auto-selection for the format
    service_account: str = ""  # one that holds the S3 credentials (KServe's storage initializer reads them)
    gpus: int = 1
    ready_timeout_s: float = 1800.0  # vLLM loads a 7-8B model in minutes; a cold image pull adds more
    poll_s: float = 10.0
    chat_timeout_s: float = 300.0
    labels: dict[str, str] = field(default_factory=dict)


def inference_service(cfg: ServeConfig, namespace: str):
    """The typed V1beta1InferenceService for `cfg` (kserve.models; validated against the CRD in the tests)."""
    from kserve.models import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

    gpu = {"nvidia.com/gpu": str(cfg.gpus)} if cfg.gpus > 0 else {}
    model = V1beta1ModelSpec(
        model_format=V1beta1ModelFormat(name=cfg.model_format),
        runtime=cfg.runtime or None,
        storage_uri=cfg.storage_uri,
        resources=V1ResourceRequirements(requests=gpu or None, limits=gpu or None) if gpu else None,
    )
    return V1beta1InferenceService(
        api_version=API_VERSION,
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=cfg.name,
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "labpipe", **cfg.labels},
        ),  # fmt: skip
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(model=model, service_account_name=cfg.service_account or None)
        ),
    )


def to_body(isvc) -> dict[str, Any]:
    """The JSON the API server receives (camelCase keys, None left out), as the kubernetes client writes it."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(isvc)


def conditions_text(obj: dict[str, Any]) -> str:
    """KServe's own account of why it is not Ready: the conditions that are not True, the model's last failure."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return f"KServe has not reconciled generation {generation} yet (status is of {status.get('observedGeneration')})"
    parts = [f"{c.get('type')}={c.get('status')}" + (f" ({c.get('reason')}: {c.get('message', '')})".rstrip(": )")
                                                     + ")" if c.get("reason") or c.get("message") else "")
             for c in status.get("conditions") or [] if c.get("status") != "True"]  # fmt: skip
    failure = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
    if failure:
        parts.append(f"model: {failure.get('reason', '?')}: {failure.get('message', '')}".rstrip(": "))
    return "; ".join(parts) or "no conditions reported yet (is KServe's controller running?)"


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the current spec: observedGeneration has caught up with metadata.generation."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def endpoint(obj: dict[str, Any]) -> str:
    """The base URL to call: status.address.url (in-cluster) if set, else status.url."""
    status = obj.get("status") or {}
    return ((status.get("address") or {}).get("url") or status.get("url") or "").rstrip("/")


def _problem(cfg: ServeConfig, namespace: str, rule: str, message: str, fix: str) -> UserError:
    return UserError(Problem(where=f"InferenceService {namespace}/{cfg.name}", rule=rule, field="serve",
                             message=message, fix=fix))  # fmt: skip


def apply(custom, cfg: ServeConfig, namespace: str) -> tuple[str, dict[str, Any]]:
    """Create the InferenceService, or replace the spec of the existing one; ("created"|"updated", object)."""
    from kubernetes.client.rest import ApiException

    body = to_body(inference_service(cfg, namespace))
    try:
        current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cfg.name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        current = None
    try:
        if current is None:
            return "created", custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
            )
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        body["metadata"]["labels"] = {
            **(current["metadata"].get("labels") or {}),
            **body["metadata"]["labels"],
        }
        if current["metadata"].get("annotations"):
            body["metadata"]["annotations"] = current["metadata"]["annotations"]
        return "updated", custom.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, cfg.name, body, field_validation="Strict"
        )
    except ApiException as exc:
        raise _problem(
            cfg,
            namespace,
            "inferenceservice-refused",
            f"the API server refused it: {exc.status} {exc.reason}: {(exc.body or '')[:500]}",
            "check the `serve` name (a DNS label) and that KServe is installed",
        ) from None


def wait_ready(custom, cfg: ServeConfig, namespace: str, action: str, emit=print) -> dict[str, Any]:
    """Poll until Ready for the current generation; UserError with KServe's conditions at the deadline."""
    deadline = time.monotonic() + cfg.ready_timeout_s
    last = ""
    while True:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cfg.name)
        if is_ready(obj):
            return obj
        text = conditions_text(obj)
        if text != last:
            emit(f"InferenceService {cfg.name}: not ready: {text}")
            last = text
        if time.monotonic() >= deadline:
            left = ("the previous revision keeps serving (KServe keeps the last ready revision); fix the model or "
                    "runtime and publish again" if action == "updated" else
                    f"the InferenceService is left in place, not Ready, for inspection: `oc describe "
                    f"inferenceservice {cfg.name} -n {namespace}`; delete it with `oc delete inferenceservice "
                    f"{cfg.name} -n {namespace}`")  # fmt: skip
            raise _problem(
                cfg,
                namespace,
                "inferenceservice-not-ready",
                f"not Ready after {cfg.ready_timeout_s:g} s: {text}",
                left,
            )
        time.sleep(cfg.poll_s)


def chat_once(cfg: ServeConfig, namespace: str, url: str) -> str:
    """One chat completion through labpipe's OpenAI client; its reply, or UserError with the client's error."""
    from labpipe.llm.openai_client import OpenAIChatClient
    from labpipe.llm.types import ChatRequest, ModelSpec

    spec = ModelSpec(target=f"{url}/v1", model=cfg.name, concurrency=1, timeout_s=cfg.chat_timeout_s,
                     max_retries=2, response_format="prompt", final_pass=False, schema_retries=0)  # fmt: skip
    client = OpenAIChatClient(spec)
    try:
        [result] = client.complete([ChatRequest(messages=[{"role": "user", "content": "Say hello in one word."}],
                                                request_id="serve-check", max_tokens=16)])  # fmt: skip
    except UserError as exc:
        raise _problem(
            cfg,
            namespace,
            "inferenceservice-chat-failed",
            f"Ready, but {url}/v1 does not answer: {'; '.join(p.message for p in exc.problems)}",
            "see the predictor pod's log",
        ) from None
    finally:
        client.close()
    if not result.ok or not result.text.strip():
        raise _problem(cfg, namespace, "inferenceservice-chat-failed",
                       f"Ready, but the chat completion at {url}/v1 failed: {result.error or 'an empty reply'}",
                       "see the predictor pod's log (`oc logs -l serving.kserve.io/inferenceservice="
                       f"{cfg.name} -n {namespace}`)")  # fmt: skip
    return result.text


def serve_model(cfg: ServeConfig, *, api_client=None, emit=print) -> dict[str, Any]:
    """Create/update, wait for Ready, chat once. Returns what lineage records: name, namespace, url, action..."""
    from kubernetes import client as k8s

    from labpipe.training.jobs import current_namespace, kube_client

    namespace = cfg.namespace or current_namespace()
    if not NAME_RE.fullmatch(cfg.name):
        raise _problem(cfg, namespace, "inferenceservice-name", f"{cfg.name!r} is not a DNS-1035 label",
                       "lower-case letters, digits and '-', starting with a letter, at most 63 characters")  # fmt: skip
    if not cfg.storage_uri.startswith(("s3://", "gs://", "pvc://", "oci://", "hf://", "https://")):
        raise _problem(cfg, namespace, "inferenceservice-storage", f"the published model is at {cfg.storage_uri!r}, "
                       "which KServe's storage initializer cannot download",
                       "run on a cluster with S3 artifact storage (the published model's s3:// URI)")  # fmt: skip
    custom = k8s.CustomObjectsApi(api_client or kube_client())
    action, created = apply(custom, cfg, namespace)
    generation = (created.get("metadata") or {}).get("generation", "")
    emit(f"InferenceService {namespace}/{cfg.name}: {action} (generation {generation}), waiting for Ready")
    obj = wait_ready(custom, cfg, namespace, action, emit)
    url = endpoint(obj)
    if not url:
        raise _problem(cfg, namespace, "inferenceservice-no-address", "Ready, but status has no address.url or url",
                       "check the InferenceService's status")  # fmt: skip
    reply = chat_once(cfg, namespace, url)
    emit(f"InferenceService {cfg.name}: Ready at {url}; chat reply {reply[:60]!r}")
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    return {"name": cfg.name, "namespace": namespace, "action": action, "url": url, "storage_uri": cfg.storage_uri,
            "generation": obj["metadata"].get("generation", ""), "revision": predictor.get("latestReadyRevision", ""),
            "runtime": (obj.get("status") or {}).get("servingRuntimeName") or cfg.runtime}  # fmt: skip


def serve_and_record(
    cfg: ServeConfig,
    *,
    run_id: str = "",
    tracking_uri: str = "",
    registered: str = "",
    api_client=None,
    emit=print,
) -> dict[str, Any]:
    """`serve_model`, then the outcome in the lineage (stage `serve_model`: the chain's last step), failed or not."""
    from labpipe.runs.lineage import record

    try:
        served = serve_model(cfg, api_client=api_client, emit=emit)
    except UserError as exc:
        record("serve_model", {"name": cfg.name, "namespace": cfg.namespace, "storage_uri": cfg.storage_uri,
                               "registered": registered, "ready": False,
                               "reason": "; ".join(p.message for p in exc.problems)},
               pipeline_run_id=run_id, tracking_uri=tracking_uri)  # fmt: skip
        raise
    record(
        "serve_model",
        {**served, "registered": registered, "ready": True},
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={"model": cfg.storage_uri},
    )
    return served
