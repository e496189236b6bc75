"""Chat requests and OpenAI request bodies, built the one way every client test builds them."""

from __future__ import annotations

from typing import Any

from labpipe.llm.types import ChatRequest

FAKE_MODEL = "fake-teacher"  # the model name tests.support.fake_openai serves by default


def user_request(text: str, request_id: str, **kw: Any) -> ChatRequest:
    """One user message; `kw` are ChatRequest's other fields (schema, max_tokens, temperature, seed...)."""
    return ChatRequest(messages=[{"role": "user", "content": text}], request_id=request_id, **kw)


def chat(i: int, words: int = 3, **kw: Any) -> ChatRequest:
    """Request `r{i}`: "Write question number {i}.", padded with filler past 4 words (prompt length tests)."""
    return user_request(f"Write question number {i}." + " filler" * max(0, words - 4), f"r{i}", **kw)


def ask(i: int, text: str = "Name a colour.", **kw: Any) -> ChatRequest:
    """Request `q{i}` with a short question (the real-server tests)."""
    return user_request(text, f"q{i}", **kw)


def chat_body(content: str, model: str = FAKE_MODEL, **extra: Any) -> dict[str, Any]:
    """A raw /v1/chat/completions body with one user message."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def schema_body(content: str, schema: dict[str, Any], model: str = FAKE_MODEL) -> dict[str, Any]:
    """A raw body asking for `schema` through response_format json_schema."""
    return chat_body(
        content,
        model,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
