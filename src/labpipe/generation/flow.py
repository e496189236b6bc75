"""Generation flows: YAML files of steps (Jinja prompt, JSON schema, sampling, fan-out, threshold).

A flow turns one starting item (a leaf, or a document chunk x seed context for knowledge) into
records by running its steps in order. Each step sends one request per item (times `fan_out`); the
reply must satisfy the step's schema. A teacher step either merges its reply into the item or, with
`explode`, turns each element of a list in the reply into a new item. A judge step stores
`{"score", "rationale"}` under `item["scores"][step]` and, when gating, drops items below `threshold`.

Who calls the judge for what (and nothing is judged twice):
- `labpipe generate` runs the steps marked `stage: generate` (the default) with the teacher model,
  including judge steps placed before a teacher step (e.g. the question filter before answers), so
  that no answer is paid for a rejected question. This is what LAB does: the teacher filters.
- `labpipe critique` runs the trailing `stage: critique` judge steps with the judge model, and only
  for records that do not carry that score yet; it then applies thresholds from its config to every
  score a record carries (recorded ones included).

Request ids are content-derived (flow, version, step, rendered messages, sampling, fan-out index), so
a checkpointed reply is reused whenever the same request would be sent again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from labpipe.errors import Problem, UserError
from labpipe.llm.types import ChatRequest, ChatResult

FLOWS_DIR = Path(__file__).parent / "flows"
PROMPTS_DIR = Path(__file__).parent / "prompts"
SOURCES = ("leaf", "chunk_x_context")
ROLES = ("teacher", "judge")
STAGES = ("generate", "critique")
KINDS = ("knowledge", "freeform_skill", "grounded_skill", "foundational_skill")
# Variables every prompt may test with `{% if %}`; anything else undefined is a template error.
PROMPT_DEFAULTS = {
    "context": None,
    "chunk": None,
    "task_description": None,
    "domain": None,
    "seed_examples": [],
}
_STEP_KEYS = {
    "name",
    "role",
    "stage",
    "prompt",
    "vars",
    "fan_out",
    "sampling",
    "explode",
    "schema",
    "threshold",
}
_FLOW_KEYS = {"name", "version", "kinds", "source", "steps"}


@dataclass(frozen=True)
class Step:
    name: str
    role: str  # teacher | judge
    prompt: str  # path under prompts/
    schema: dict[str, Any]
    stage: str = "generate"  # generate | critique
    vars: dict[str, Any] = field(default_factory=dict)
    fan_out: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    explode_field: str | None = None
    explode_as: str | None = None  # None: list elements are objects merged into the item
    threshold: float | None = None  # judge steps: minimum score to keep (LAB's value)

    @property
    def is_judge(self) -> bool:
        return self.role == "judge"


@dataclass(frozen=True)
class Flow:
    name: str
    version: int
    kinds: tuple[str, ...]
    source: str
    steps: tuple[Step, ...]
    path: str = ""

    @property
    def generate_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.stage == "generate")

    @property
    def critique_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.stage == "critique")


# ---------------------------------------------------------------- loading and validation


def _marks(node: yaml.Node, path: tuple = ()) -> dict[tuple, yaml.Mark]:
    """Map each key path of a composed YAML document to where its value starts."""
    out = {path: node.start_mark}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out.update(_marks(value, (*path, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_marks(value, (*path, i)))
    return out


class _Checker:
    def __init__(self, file: str, marks: dict[tuple, yaml.Mark]):
        self.file, self.marks, self.problems = file, marks, []

    def fail(self, path: tuple, rule: str, message: str, fix: str = "") -> None:
        probe = path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        mark = self.marks.get(probe)
        where = f"{self.file}:{mark.line + 1}:{mark.column + 1}" if mark else self.file
        name = ".".join(str(p) for p in path)
        self.problems.append(Problem(where=where, rule=rule, message=message, fix=fix, field=name))


def load_flow(path: str | Path) -> Flow:
    """Load and validate one flow file; every problem is reported with file:line:column and field."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(
            Problem(where, "yaml-syntax", str(exc).splitlines()[0], "fix the YAML syntax")
        ) from None
    ck = _Checker(str(path), _marks(node) if node is not None else {})
    if not isinstance(raw, dict):
        ck.fail((), "flow-shape", "a flow file must be a mapping with name, version, kinds, source, steps")
        raise UserError(ck.problems)
    for key in sorted(set(raw) - _FLOW_KEYS):
        ck.fail((key,), "unknown-key", f"unknown key {key!r}", f"allowed: {', '.join(sorted(_FLOW_KEYS))}")
    for key in ("name", "version", "kinds", "source", "steps"):
        if key not in raw:
            ck.fail((), "missing-field", f"missing required field {key!r}")
    if not isinstance(raw.get("version", 1), int):
        ck.fail(("version",), "type", "version must be an integer")
    kinds = raw.get("kinds") or []
    if not isinstance(kinds, list) or any(k not in KINDS for k in kinds):
        ck.fail(("kinds",), "enum", f"kinds must be a list of {', '.join(KINDS)}; got {kinds!r}")
    if raw.get("source", "leaf") not in SOURCES:
        ck.fail(("source",), "enum", f"source must be one of {', '.join(SOURCES)}; got {raw.get('source')!r}")
    steps_raw = raw.get("steps") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        ck.fail(("steps",), "steps", "steps must be a non-empty list")
        steps_raw = []
    steps = [st for i, raw_step in enumerate(steps_raw) if (st := _step(ck, i, raw_step)) is not None]
    names = [s.name for s in steps]
    for i, name in enumerate(names):
        if name in names[:i]:
            ck.fail(("steps", i, "name"), "duplicate-step", f"step name {name!r} is used twice")
    seen_critique = False
    for i, s in enumerate(steps):
        if s.stage == "critique":
            seen_critique = True
            if not s.is_judge:
                ck.fail(("steps", i, "stage"), "critique-step", "only judge steps may run in critique")
        elif seen_critique:
            ck.fail(("steps", i, "stage"), "step-order", "generate steps must come before all critique steps")
    if ck.problems:
        raise UserError(ck.problems)
    return Flow(
        name=raw["name"],
        version=raw["version"],
        kinds=tuple(kinds),
        source=raw.get("source", "leaf"),
        steps=tuple(steps),
        path=str(path),
    )


def _step(ck: _Checker, i: int, raw: Any) -> Step | None:
    at = ("steps", i)
    if not isinstance(raw, dict):
        ck.fail(at, "step-shape", "each step must be a mapping")
        return None
    for key in sorted(set(raw) - _STEP_KEYS):
        ck.fail(
            (*at, key),
            "unknown-key",
            f"unknown step key {key!r}",
            f"allowed: {', '.join(sorted(_STEP_KEYS))}",
        )
    for key in ("name", "role", "prompt", "schema"):
        if key not in raw:
            ck.fail(at, "missing-field", f"step {i} misses required field {key!r}")
    role, stage = raw.get("role", "teacher"), raw.get("stage", "generate")
    if role not in ROLES:
        ck.fail((*at, "role"), "enum", f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if stage not in STAGES:
        ck.fail((*at, "stage"), "enum", f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    prompt = raw.get("prompt", "")
    if prompt and not (PROMPTS_DIR / prompt).is_file():
        ck.fail((*at, "prompt"), "prompt-missing", f"prompt file {prompt!r} not found under {PROMPTS_DIR}")
    elif prompt:
        try:
            _env().get_template(prompt)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            ck.fail((*at, "prompt"), "prompt-syntax", f"{prompt}: {exc}")
    schema = raw.get("schema")
    if "schema" in raw:
        _check_schema(ck, (*at, "schema"), schema, role)
    fan_out = raw.get("fan_out", 1)
    if not isinstance(fan_out, int) or fan_out < 1:
        ck.fail((*at, "fan_out"), "range", f"fan_out must be an integer >= 1; got {fan_out!r}")
    sampling = raw.get("sampling") or {}
    if not isinstance(sampling, dict) or set(sampling) - {"temperature", "max_tokens"}:
        ck.fail((*at, "sampling"), "sampling", "sampling may only set temperature and max_tokens")
        sampling = {}
    explode = raw.get("explode")
    if explode is not None and (not isinstance(explode, dict) or "field" not in explode):
        ck.fail((*at, "explode"), "explode", "explode must be a mapping {field: LIST_FIELD, as: NAME}")
        explode = None
    if explode and isinstance(schema, dict):
        prop = (schema.get("properties") or {}).get(explode["field"], {})
        if prop.get("type") != "array":
            ck.fail(
                (*at, "explode", "field"), "explode", f"schema property {explode['field']!r} must be an array"
            )
    threshold = raw.get("threshold")
    if threshold is not None and (role != "judge" or not isinstance(threshold, int | float)):
        ck.fail((*at, "threshold"), "threshold", "threshold is a number, and only judge steps have one")
    if not all(k in raw for k in ("name", "prompt", "schema")):
        return None
    return Step(
        name=str(raw["name"]),
        role=role,
        prompt=prompt,
        schema=schema if isinstance(schema, dict) else {},
        stage=stage,
        vars=dict(raw.get("vars") or {}),
        fan_out=fan_out if isinstance(fan_out, int) else 1,
        temperature=float(sampling.get("temperature", 0.0)),
        max_tokens=int(sampling.get("max_tokens", 512)),
        explode_field=explode["field"] if explode else None,
        explode_as=(explode or {}).get("as"),
        threshold=threshold,
    )


def _check_schema(ck: _Checker, at: tuple, schema: Any, role: str) -> None:
    import jsonschema

    if not isinstance(schema, dict) or schema.get("type") != "object":
        ck.fail(at, "schema", "schema must be a JSON schema of type object")
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        ck.fail(at, "schema", f"not a valid JSON schema: {exc.message}")
        return
    if role == "judge":
        props = schema.get("properties") or {}
        if (
            "score" not in props
            or "rationale" not in props
            or not {"score", "rationale"} <= set(schema.get("required", []))
        ):
            ck.fail(
                at, "judge-schema", "a judge step's schema must require `rationale` and a numeric `score`"
            )


@cache
def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def load_flows(flows_dir: str | None = None) -> dict[str, Flow]:
    """Every flow in `flows_dir` (default: the shipped ones) keyed by leaf kind."""
    by_kind: dict[str, Flow] = {}
    for path in sorted(Path(flows_dir or FLOWS_DIR).glob("*.yaml")):
        flow = load_flow(path)
        for kind in flow.kinds:
            if kind in by_kind:
                raise UserError(
                    Problem(
                        str(path),
                        "duplicate-kind",
                        f"kind {kind!r} is already handled by {by_kind[kind].path}",
                    )
                )
            by_kind[kind] = flow
    return by_kind


# ---------------------------------------------------------------- items, requests and results


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:n]


def item_id(item: dict[str, Any]) -> str:
    return digest({k: v for k, v in item.items() if k not in ("id", "scores")})


def start_items(flow: Flow, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The items a flow starts from for one seed record."""
    base = {"leaf_id": record["leaf_id"], "kind": record["kind"]}
    if flow.source == "leaf":
        items = [
            {
                **base,
                "task_description": record.get("task_description") or "",
                "seed_examples": record.get("seed_examples") or [],
            }
        ]
    else:
        contexts: dict[str, list[dict]] = {}
        for ex in record.get("seed_examples") or []:
            contexts.setdefault(ex.get("context") or "", []).append(ex)
        items = [
            {
                **base,
                "domain": record.get("domain") or "",
                "chunk": chunk["text"],
                "chunk_id": chunk.get("chunk_id", ""),
                "seed_context": ctx,
                "seed_examples": examples,
            }
            for chunk in record.get("chunks") or []
            for ctx, examples in contexts.items()
        ]
    for item in items:
        item["id"] = item_id(item)
    return items


def render(step: Step, item: dict[str, Any]) -> list[dict[str, str]]:
    text = _env().get_template(step.prompt).render({**PROMPT_DEFAULTS, **item, **step.vars})
    return [{"role": "user", "content": text.strip()}]


def chain_priority(flow: Flow, step: Step, fan_out_index: int = 0) -> int:
    """The length of the dependency chain a request of `step` starts: the generate steps left, itself
    included (0 for a critique step). Sent first (llm/order.py): the run ends when its longest chain ends.
    An item's further fan-out requests (index > 0) get 0: one reply carries the item's chain on; the
    others are width that fills the endpoint while chains wait for replies (sent first, identical replies
    would be paid for ahead of every chain's next step, and the run would end on its chains' drain)."""
    if fan_out_index > 0:
        return 0
    steps = flow.generate_steps
    return next((len(steps) - i for i, s in enumerate(steps) if s is step), 0)


def plan(
    flow: Flow, step: Step, items: list[dict[str, Any]], *, seed: int = 0, fan_out_scale: float = 1.0
) -> list[tuple[dict[str, Any], ChatRequest]]:
    """One request per item and fan-out index, with a content-derived request id, and the priority of
    the chain it starts (`chain_priority`; the id does not depend on it).

    `fan_out_scale` scales only the steps that create items (teacher steps): a judge step scores each
    item once whatever the scale (scaling it would only send duplicate judgments to be dropped)."""
    fan_out = step.fan_out if step.is_judge else max(1, round(step.fan_out * fan_out_scale))
    out = []
    for item in items:
        messages = render(step, item)
        for k in range(fan_out):
            rid = digest(
                [flow.name, flow.version, step.name, messages, step.temperature, step.max_tokens, k, seed], 24
            )
            out.append(
                (
                    item,
                    ChatRequest(
                        messages=messages,
                        request_id=rid,
                        schema=step.schema,
                        temperature=step.temperature,
                        max_tokens=step.max_tokens,
                        seed=seed + k,
                        priority=chain_priority(flow, step, k),
                    ),
                )
            )
    return out


def schema_error(step: Step, data: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(_validator(json.dumps(step.schema, sort_keys=True)).iter_errors(data))
    return f"schema: {error.message[:200]}" if error is not None else None


@cache
def _validator(schema_json: str):
    """One compiled validator per schema (jsonschema.validate re-checks the schema on every call: ~9 ms)."""
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def parse_reply(step: Step, result: ChatResult | None) -> tuple[Any, str | None]:
    """(the reply's JSON value, None) or (None, why it is unusable)."""
    if result is None or not result.ok:
        return None, f"request failed: {result.error if result else 'no result'}"
    data = result.data
    if data is None:
        try:
            data = json.loads(result.text)
        except (json.JSONDecodeError, TypeError):
            return None, "reply is not JSON"
    if err := schema_error(step, data):
        return None, err
    return data, None


@dataclass
class StepOutcome:
    items: list[dict[str, Any]]
    dropped: dict[str, int]  # reason -> count (failed requests, schema violations, below threshold)


def apply(
    step: Step,
    planned: list[tuple[dict[str, Any], ChatRequest]],
    results: dict[str, ChatResult],
    *,
    gate: bool = True,
) -> StepOutcome:
    """Turn the step's results into the next items; count what was dropped and why."""
    out: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    seen: set[str] = set()

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for item, request in planned:
        data, problem = parse_reply(step, results.get(request.request_id))
        if problem:
            drop(problem)
            continue
        if step.is_judge:
            score = {"score": data["score"], "rationale": data["rationale"]}
            if gate and step.threshold is not None and data["score"] < step.threshold:
                drop(f"{step.name} score {data['score']} < {step.threshold}")
                continue
            new = [{**item, "scores": {**item.get("scores", {}), step.name: score}}]
        elif step.explode_field:
            new = []
            for element in data[step.explode_field]:
                fields = {step.explode_as: element} if step.explode_as else dict(element)
                new.append({**item, **fields})
        else:
            new = [{**item, **data}]
        for n in new:
            n["id"] = item_id(n)
            if n["id"] in seen:  # the same content twice (e.g. identical fan-out replies)
                drop("duplicate of another reply")
                continue
            seen.add(n["id"])
            out.append(n)
    return StepOutcome(out, dropped)
