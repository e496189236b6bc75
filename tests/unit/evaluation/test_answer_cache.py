"""The answer/verdict cache in front of a model client: hits are not sent, replies are stored as they come,
keys ignore the run's label for the model but not the conversation, the sampling or the model."""

from __future__ import annotations

from labpipe.evaluation.answering import CachedClient
from labpipe.llm.cache import GenerationCache
from labpipe.llm.types import ChatResult, ClientStats
from tests.support.chat import user_request


class Recording:
    """A model client that answers with the request's last message, and records what it was sent."""

    def __init__(self, fail: set[str] = frozenset(), report: bool = True):
        self.sent: list[str] = []
        self.fail, self.report = fail, report
        self.stats, self.model_name = ClientStats(), "m"

    def complete(self, requests, on_result=None):
        out = []
        for r in requests:
            self.sent.append(r.request_id)
            error = "server_error: boom" if r.request_id in self.fail else None
            result = ChatResult(r.request_id, "" if error else r.messages[-1]["content"].upper(), error=error)
            if on_result and self.report:
                on_result(result)
            out.append(result)
        return out

    def close(self):
        pass


def test_second_run_sends_nothing_and_labels_do_not_matter(tmp_path):
    cache = GenerationCache(str(tmp_path / "c"))
    first = CachedClient(Recording(), cache, "hf:sha256:aa", kind="answer")
    a = first.complete([user_request("hi", "candidate:81:1"), user_request("yo", "candidate:82:1")])
    assert [r.text for r in a] == ["HI", "YO"] and first.reuse.sent == 2
    inner = Recording()
    again = CachedClient(inner, cache, "hf:sha256:aa", kind="answer")  # another run, another label
    b = again.complete(
        [user_request("hi", "base:81:1"), user_request("yo", "base:82:1"), user_request("new", "base:83:1")]
    )
    assert inner.sent == ["base:83:1"] and again.reuse.as_dict() == {"asked": 3, "cached": 2, "sent": 1}
    assert [r.request_id for r in b] == ["base:81:1", "base:82:1", "base:83:1"] and b[0].text == "HI"


def test_other_model_settings_or_conversation_are_new_requests(tmp_path):
    cache = GenerationCache(str(tmp_path / "c"))
    CachedClient(Recording(), cache, "hf:sha256:aa", kind="answer").complete([user_request("hi", "c:81:1")])
    for identity, request in [
        ("hf:sha256:bb", user_request("hi", "c:81:1")),  # other weights
        ("vllm:sha256:aa", user_request("hi", "c:81:1")),  # other engine
        ("hf:sha256:aa", user_request("hi", "c:81:1", temperature=0.7)),  # other sampling
        ("hf:sha256:aa", user_request("hi", "c:81:1", max_tokens=2048)),
        ("hf:sha256:aa", user_request("hi there", "c:81:1")),  # another question text
        ("hf:sha256:aa", user_request("hi", "c:81:2")),  # another turn
    ]:
        inner = Recording()
        CachedClient(inner, cache, identity, kind="answer").complete([request])
        assert inner.sent == [request.request_id], (identity, request)


def test_failures_are_not_cached_and_a_client_without_callbacks_still_fills_the_cache(tmp_path):
    cache = GenerationCache(str(tmp_path / "c"))
    client = CachedClient(Recording(fail={"c:2:1"}, report=False), cache, "x", kind="answer")
    results = client.complete([user_request("a", "c:1:1"), user_request("b", "c:2:1")])
    assert results[0].ok and not results[1].ok
    inner = Recording()
    CachedClient(inner, cache, "x", kind="answer").complete(
        [user_request("a", "c:1:1"), user_request("b", "c:2:1")]
    )
    assert inner.sent == ["c:2:1"]  # only the failed one is asked again


def test_verdicts_are_keyed_without_the_models_label(tmp_path):
    cache = GenerationCache(str(tmp_path / "c"))
    CachedClient(Recording(), cache, "endpoint:judge", kind="judge").complete(
        [user_request("p", "judge:candidate:81:1:1")]
    )
    inner = Recording()
    CachedClient(inner, cache, "endpoint:judge", kind="judge").complete(
        # the same prompt; a re-ask is new
        [user_request("p", "judge:base:81:1:1"), user_request("p", "judge:base:81:1:2")]
    )
    assert inner.sent == ["judge:base:81:1:2"]
