"""The model-client factory: the backend for a `ModelSpec` (`make_client`): the OpenAI-compatible HTTP
client for an http(s) URL, the in-process Hugging Face client for a model directory or s3:// URI. The
types are in `labpipe.llm.types`; a stage's options and the ModelSpec made from them in
`labpipe.llm.options`.
"""

from __future__ import annotations

from labpipe.llm.types import ChatClient, ModelSpec


def make_client(spec: ModelSpec) -> ChatClient:
    if spec.is_endpoint:
        from labpipe.llm.openai_client import OpenAIChatClient

        return OpenAIChatClient(spec)
    from labpipe.llm.hf_client import HFChatClient

    return HFChatClient(spec)
