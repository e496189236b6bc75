"""The model-client factory: a `ModelSpec` from a stage's flags and parameters (`resolve_model_spec`),
and the backend for it (`make_client`): the OpenAI-compatible HTTP client for an http(s) URL, the
in-process Hugging Face client for a model directory or s3:// URI. The types are in `labpipe.llm.types`.
"""

from __future__ import annotations

import os
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.llm.types import ChatClient, ModelSpec


def resolve_model_spec(
    target: str,
    model: str = "",
    *,
    role: str,
    api_key_env: str = "",
    concurrency: int = 32,
    secret: str = "",
    **client_options: Any,
) -> ModelSpec:
    """A ModelSpec from flags/parameters, falling back to ROLE_ENDPOINT / ROLE_MODEL / ROLE_API_KEY.

    `client_options`: other ModelSpec fields (timeout_s, max_retries, schema_retries, ...)."""
    prefix = role.upper()
    target = target or os.environ.get(f"{prefix}_ENDPOINT", "")
    model = model or os.environ.get(f"{prefix}_MODEL", "")
    if not target:
        where = f"secret {secret!r}" if secret else f"--{role} / {prefix}_ENDPOINT"
        raise UserError(
            Problem(
                where,
                "model-missing",
                f"no {role} model given",
                f"pass --{role} URL|PATH or set {prefix}_ENDPOINT (e.g. from the secret's keys)",
            )
        )
    if not api_key_env:
        api_key_env = f"{prefix}_API_KEY" if os.environ.get(f"{prefix}_API_KEY") else "OPENAI_API_KEY"
    return ModelSpec(
        target=target, model=model or None, api_key_env=api_key_env, concurrency=concurrency, **client_options
    )


# the options a stage config (generation, critique) passes on to its model client
CLIENT_OPTIONS = ("api_key_env", "concurrency", "secret", "timeout_s", "max_retries", "schema_retries",
                  "response_format", "context_length", "revision")  # fmt: skip


def client_options(config: Any) -> dict[str, Any]:
    """The client settings of a stage config, for resolve_model_spec."""
    return {name: getattr(config, name) for name in CLIENT_OPTIONS}


def make_client(spec: ModelSpec) -> ChatClient:
    if spec.is_endpoint:
        from labpipe.llm.openai_client import OpenAIChatClient

        return OpenAIChatClient(spec)
    from labpipe.llm.hf_client import HFChatClient

    return HFChatClient(spec)
