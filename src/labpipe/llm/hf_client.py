"""The in-process Hugging Face backend: batched generation on a local (or s3://) model, schemas enforced
by grammar-constrained decoding with xgrammar.

Requests are grouped by sampling parameters (temperature, max_tokens, seed), sorted by prompt length
and generated `spec.batch_size` at a time with left padding; results come back in request order and
through `on_result` as each batch finishes. Without a schema it is plain sampling (greedy at
temperature 0). Sampling is deterministic under the request's seed (or `spec.seed`).

Grammar-constrained decoding guarantees the shape of the JSON, not that it finishes within max_tokens:
a random model happily writes a string forever. `constrained_schema` therefore tightens a schema
before compiling it - printable characters only in free-text strings, and string lengths, array sizes
and number ranges bounded so that the longest possible reply fits in max_tokens. Replies still get
validated against the caller's original schema.

xgrammar is installed without its triton dependency (CPU decoding does not need it):
    pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.json_extract import NotJSON, check_schema, extract_json
from labpipe.llm.types import ChatRequest, ChatResult, ClientStats, ModelSpec

log = logging.getLogger(__name__)

XGRAMMAR_INSTALL = "pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2"
# Printable ASCII but the quote and the backslash: no control bytes from a random model, and one byte per
# character (nothing to escape), which keeps the worst-case length exact.
PRINTABLE = r"[ !#-\[\]-~]"
DEFAULT_MAX_ITEMS = 8
INT_LIMIT = 10**9 - 1  # bound for integers / numbers without one (a random model writes digits forever)
_NUMBER_BYTES = 24  # worst case for a bounded float
REPEAT_LIMIT = 128  # xgrammar 0.2.8 fails to compile a bounded repetition above {0,128}: chain chunks
MAX_TEXT = 4 * REPEAT_LIMIT  # longest bounded string; compile time grows fast with the chunk count
_CHUNK = re.compile(re.escape(PRINTABLE) + r"\{\d+,(\d+)\}")


_UNBOUNDED: dict[int, int] = {}  # max_tokens -> how many schemas could not be bounded to it


def _warn_unbounded(max_tokens: int) -> None:
    """Say it once when it first happens, and once more with the count when the client closes (not once per
    request; not at interpreter exit, where the log's stream may already be closed)."""
    if max_tokens not in _UNBOUNDED:
        log.warning("schema cannot be bounded to %d tokens; long replies may be cut and rejected "
                    "(said once; the count follows at the end)", max_tokens)
    _UNBOUNDED[max_tokens] = _UNBOUNDED.get(max_tokens, 0) + 1


def _report_unbounded() -> None:
    for max_tokens, count in sorted(_UNBOUNDED.items()):
        if count > 1:
            log.warning("schema cannot be bounded to %d tokens: %d requests in all", max_tokens, count)
    _UNBOUNDED.clear()


def constrained_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of `schema` that grammar-constrained decoding finishes within `max_tokens` tokens.

    Free-text strings get a printable-ASCII pattern carrying their length bound (the largest that fits
    the budget, shared out among an array's items, or the schema's own maxLength if smaller); arrays at most `DEFAULT_MAX_ITEMS` items unless
    the schema says fewer; numbers without bounds get +-`INT_LIMIT`. Strings with their own `pattern`,
    `enum` or `const` are left as they are. Every value this schema admits also satisfies `schema`.
    The budget counts one byte per token (byte-level tokenizers never do worse).
    """
    budget = max_tokens - 1  # the end-of-turn token

    def fits(cap: int) -> bool:
        tightened = _tighten(schema, cap)
        return _worst_bytes(tightened, tightened) <= budget

    if not fits(1):  # parts we may not touch (own patterns, formats) are unbounded, or the budget is tiny
        _warn_unbounded(max_tokens)
        return _tighten(schema, max(1, budget // 4))
    lo, hi = 1, MAX_TEXT
    while lo < hi:  # the longest string cap whose worst case still fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return _tighten(schema, lo)


def _tighten(schema: dict[str, Any], cap: int) -> dict[str, Any]:
    """`schema` with free-text strings at most `cap` characters (shared out among an array's items)."""

    def walk(node: Any, cap: int) -> Any:
        if isinstance(node, list):
            return [walk(n, cap) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        kind = node.get("type")
        if kind == "array":
            n = max(min(node.get("maxItems", DEFAULT_MAX_ITEMS), DEFAULT_MAX_ITEMS), node.get("minItems", 0))
            node["maxItems"] = n
            cap = max(1, cap // max(n, 1))
        node = {k: walk(v, cap) if k not in ("enum", "const") else v for k, v in node.items()}
        if kind == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
            lo_len = node.pop("minLength", 0)
            hi_len = max(lo_len, min(node.pop("maxLength", cap), cap))
            node["pattern"] = _text_pattern(lo_len, hi_len)  # xgrammar ignores maxLength next to a pattern
        elif kind in ("integer", "number"):
            if "minimum" not in node and "exclusiveMinimum" not in node:
                node["minimum"] = -INT_LIMIT
            if "maximum" not in node and "exclusiveMaximum" not in node:
                node["maximum"] = INT_LIMIT
        return node

    return walk(copy.deepcopy(schema), cap)


def _text_pattern(lo: int, hi: int) -> str:
    """Printable text of lo..hi characters, as chunks xgrammar can compile."""
    if hi > MAX_TEXT:
        return f"^{PRINTABLE}*$"
    chunks = []
    while hi > 0 or not chunks:
        n = min(hi, REPEAT_LIMIT)
        m = min(lo, n)
        chunks.append(f"{PRINTABLE}{{{m},{n}}}")
        hi, lo = hi - n, lo - m
    return "^" + "".join(chunks) + "$"


def _pattern_bytes(pattern: str) -> int:
    """A rough upper bound on the JSON bytes of strings matching a caller's own pattern (10**6: unbounded).

    Without open-ended quantifiers (*, +, {n,}) a match has at most len(pattern) + the quantifiers'
    maxima characters; one byte each when the pattern can only match ASCII without escapes, else six.
    """
    if re.search(r"(?<!\\)[*+]|\{\d+,\}", pattern):
        return 10**6
    chars = len(pattern) + sum(int(hi or lo) for lo, hi in re.findall(r"\{(\d+)(?:,(\d+))?\}", pattern))
    needs_escape_or_unicode = (r"\\[uxpPsWSD\\]", r"\[\^", r"(?<!\\)\.", '"')
    ascii_only = pattern.isascii() and not any(re.search(n, pattern) for n in needs_escape_or_unicode)
    return 2 + chars * (1 if ascii_only else 6)


def _worst_bytes(node: Any, root: dict[str, Any], depth: int = 0) -> int:
    """An upper bound on the bytes of any compact JSON value `node` admits (10**6: unbounded)."""
    unbounded = 10**6
    if depth > 32 or not isinstance(node, dict):
        return unbounded
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _worst_bytes(target, root, depth + 1)
    if "const" in node:
        return len(json.dumps(node["const"]))
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max(_worst_bytes(n, root, depth + 1) for n in node[key])
    kind = node.get("type")
    if isinstance(kind, list):
        return max(_worst_bytes({**node, "type": k}, root, depth + 1) for k in kind)
    if kind == "string":
        chunks = _CHUNK.findall(node.get("pattern", ""))
        if chunks:  # a pattern of ours: one byte per character
            return 2 + sum(int(n) for n in chunks)
        if "maxLength" in node:
            return 2 + 6 * node["maxLength"]
        return _pattern_bytes(node["pattern"]) if "pattern" in node else unbounded
    if kind in ("integer", "number"):
        ends = [node.get(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
        digits = max((len(str(int(e))) for e in ends if e is not None), default=0)
        if not digits:
            return unbounded
        return digits + 1 if kind == "integer" else _NUMBER_BYTES
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    if kind == "array":
        item = _worst_bytes(node.get("items", {}), root, depth + 1)
        return 2 + node.get("maxItems", unbounded) * (item + 2)
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return 2 + sum(len(json.dumps(k)) + 4 + _worst_bytes(v, root, depth + 1) for k, v in props.items())
    return unbounded


class HFChatClient:
    """Chat completion with a Hugging Face causal LM run in this process; see the module docstring."""

    def __init__(self, spec: ModelSpec):
        from labpipe.models.loading import load_model_and_tokenizer

        self.spec = spec
        self.stats = ClientStats()
        self.model_name = spec.model or Path(spec.target.rstrip("/")).name
        self.model, self.tokenizer = load_model_and_tokenizer(spec.target)
        self._compiler = None
        self._grammars: dict[str, Any] = {}
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    def __repr__(self) -> str:
        return f"HFChatClient(target={self.spec.target!r}, batch_size={self.spec.batch_size})"

    def close(self) -> None:
        self._grammars.clear()
        _report_unbounded()

    def complete(
        self, requests: Sequence[ChatRequest], on_result: Callable[[ChatResult], None] | None = None
    ) -> list[ChatResult]:
        """Generate every request, batched; results in request order."""
        requests = list(requests)
        results: list[ChatResult | None] = [None] * len(requests)
        prompts = [self._prompt_ids(r) for r in requests]

        def deliver(i: int, result: ChatResult) -> None:
            results[i] = result
            if result.ok:
                self.stats.completed += 1
            else:
                self.stats.failed += 1
                self.stats.errors[result.error.split(":", 1)[0]] += 1
                self.stats.record_failure(result.error)
            if on_result is not None:
                on_result(result)

        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            if self.context_length and len(prompts[i]) + request.max_tokens > self.context_length:
                deliver(
                    i,
                    ChatResult(
                        request.request_id,
                        error=(
                            f"context_length: {len(prompts[i])} prompt tokens + max_tokens {request.max_tokens} "
                            f"exceed the model's context of {self.context_length}"
                        ),
                    ),
                )
                continue
            groups.setdefault(self._sampling_key(request), []).append(i)
        for indices in groups.values():
            indices.sort(key=lambda i: (-len(prompts[i]), i))
            for start in range(0, len(indices), self.spec.batch_size):
                batch = indices[start : start + self.spec.batch_size]
                for i, result in zip(
                    batch,
                    self._generate([requests[i] for i in batch], [prompts[i] for i in batch]),
                    strict=True,
                ):
                    deliver(i, result)
        return results

    def _sampling_key(self, request: ChatRequest) -> tuple:
        sampling = request.temperature > 0
        seed = (request.seed if request.seed is not None else self.spec.seed) if sampling else None
        return (
            sampling,
            request.temperature if sampling else 0.0,
            request.max_tokens,
            seed,
            request.schema is not None,
        )

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            list(request.messages), add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate(self, requests: list[ChatRequest], prompts: list[list[int]]) -> list[ChatResult]:
        import torch

        first = requests[0]
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_tokens,
            "pad_token_id": pad,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature)
            seed = first.seed if first.seed is not None else self.spec.seed
            ids = "".join(r.request_id for r in requests)
            torch.manual_seed(int(hashlib.sha256(f"{seed}:{ids}".encode()).hexdigest()[:15], 16))
        else:
            kwargs["do_sample"] = False
        if first.schema is not None:
            kwargs["logits_processor"] = [self._logits_processor(requests)]
        self.stats.requests += len(requests)
        self.stats.in_flight = len(requests)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        self.stats.in_flight = 0
        return [
            self._result(r, len(p), row)
            for r, p, row in zip(requests, prompts, out[:, width:].tolist(), strict=True)
        ]

    def _result(self, request: ChatRequest, n_prompt: int, generated: list[int]) -> ChatResult:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        cut = generated.index(eos) if eos in generated else len(generated)
        tokens = [t for t in generated[:cut] if t != pad]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        result = ChatResult(
            request.request_id,
            text=text,
            prompt_tokens=n_prompt,
            completion_tokens=min(cut + 1, len(generated)),
        )
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        if request.schema is None:
            return result
        finished = "" if cut < len(generated) else f" (cut at max_tokens {request.max_tokens})"
        try:
            result.data = extract_json(text)
        except NotJSON as exc:
            return ChatResult(request.request_id, text=text, error=f"not_json: {exc}{finished}")
        reason = check_schema(result.data, request.schema)
        if reason:
            return ChatResult(request.request_id, text=text, error=f"schema: {reason}{finished}")
        return result

    def _logits_processor(self, requests: list[ChatRequest]):
        try:
            import xgrammar as xgr
            import xgrammar.contrib.hf
        except ImportError:
            raise UserError(
                Problem(
                    where=self.spec.target,
                    rule="xgrammar",
                    message="schema-constrained generation needs xgrammar",
                    fix=XGRAMMAR_INSTALL,
                )
            ) from None
        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer,
                vocab_size=self.model.config.vocab_size,
                stop_token_ids=[self.tokenizer.eos_token_id],
            )
            self._compiler = xgr.GrammarCompiler(info)
        grammars = []
        for request in requests:
            safe = json.dumps(constrained_schema(request.schema, request.max_tokens), sort_keys=True)
            if safe not in self._grammars:
                self._grammars[safe] = self._compiler.compile_json_schema(safe, any_whitespace=False)
            grammars.append(self._grammars[safe])
        return xgrammar.contrib.hf.LogitsProcessor(grammars)  # one per generate() call: it keeps state
