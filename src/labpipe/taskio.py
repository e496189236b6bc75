"""What a KFP component does around its one library call: put the stage's metadata on its output artifacts
and record the stage's lineage on the pipeline's MLflow run. Kept here so the components stay one call each.

Never imports kfp: artifacts are used by their `uri` and `metadata` attributes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _uri(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):  # a collected list of artifacts (dsl.Collected)
        return ",".join(_uri(v) for v in value)
    return value.uri


def start() -> None:
    """Before the stage runs: a UserError prints its problems, one line each, and no traceback."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()


def finish(
    stage: str,
    meta: Mapping[str, Any],
    *,
    run_id: str,
    tracking_uri: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict:
    """Each output artifact gets `metadata[name]` (default: the stage's split, METADATA, else all of `meta`); lineage records the inputs (strings,
    artifacts or lists of artifacts; None is left out) and outputs by URI. Returns `meta`."""
    from labpipe.runs.lineage import record

    if metadata is None and stage in METADATA:
        metadata = METADATA[stage](meta)
    for name, artifact in outputs.items():
        artifact.metadata.update((metadata or {}).get(name, meta))
    record(
        stage,
        meta,
        pipeline_run_id=run_id,
        tracking_uri=tracking_uri,
        inputs={k: _uri(v) for k, v in inputs.items() if v is not None},
        outputs={k: _uri(v) for k, v in outputs.items()},
    )
    return dict(meta)


def critique_metadata(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The critique stage's metadata per output: the knowledge set's counts, the skills set's, the whole report."""
    return {
        "knowledge_set": {k: v for k, v in meta.items() if k.startswith("knowledge") or k == "kept"},
        "skills_set": {k: v for k, v in meta.items() if k.startswith("skills") or k == "knowledge_replay"},
        "report": dict(meta),
    }


# stage -> how its metadata splits over its output artifacts (the others get all of it)
METADATA = {"critique_filter": critique_metadata}
