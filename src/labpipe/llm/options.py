"""The options of one model a stage talks to (generation's teacher, critique's and review's judge), and
the one function that makes its `ModelSpec` from them.

Adding a client option touches this dataclass, the pipeline parameter table, and the code that uses it:
the stage configs hold a `ClientOptions` (`GenerationConfig.teacher`, `CritiqueConfig.judge`, ...), the
CLI builds it in `labpipe.commands.generation.client_options_from`, and `model_spec` hands it on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labpipe.errors import Problem, UserError
from labpipe.llm.types import ModelSpec


@dataclass
class ClientOptions:
    endpoint: str = ""  # http(s)://.../v1, or a local model dir / s3://; "" = ROLE_ENDPOINT
    model: str = ""  # model name sent to the endpoint; "" = ROLE_MODEL, else the endpoint's first model
    api_key_env: str = ""  # variable holding the key; "" = ROLE_API_KEY where set, else OPENAI_API_KEY
    secret: str = ""  # name of the Kubernetes secret the ROLE_* variables came from (for messages)
    concurrency: int = 32  # endpoints: the ceiling of the adaptive limit
    timeout_s: float = 120.0  # per HTTP attempt
    max_retries: int = 6  # transient failures (429, 5xx, timeouts, dropped connections) per request
    schema_retries: int = 2  # re-asks for a reply that is not JSON or breaks the schema
    response_format: str = "auto"  # auto (probe) | json_schema | json_object | prompt
    context_length: int = 0  # the model's context window; 0 = as its GET /models reports it
    revision: str = ""  # the model's weights (commit, digest) for the cache key, where its server says none
    batch_size: int = 16  # a local model run in-process: prompts per generate() call


def model_spec(options: ClientOptions, role: str = "") -> ModelSpec:
    """The ModelSpec of `options`. With a `role` (teacher, judge), what they leave empty falls back to
    ROLE_ENDPOINT / ROLE_MODEL / ROLE_API_KEY; without one they are taken as given (the key from
    OPENAI_API_KEY when none is named). Raises UserError when no model is given at all."""
    prefix = role.upper()
    env = os.environ if role else {}
    target = options.endpoint or env.get(f"{prefix}_ENDPOINT", "")
    model = options.model or env.get(f"{prefix}_MODEL", "")
    if not target:
        flag = f"--{role} / {prefix}_ENDPOINT" if role else "endpoint"
        raise UserError(
            Problem(
                f"secret {options.secret!r}" if options.secret else flag,
                "model-missing",
                f"no {role or 'model'} given" if not role else f"no {role} model given",
                f"pass --{role} URL|PATH or set {prefix}_ENDPOINT (e.g. from the secret's keys)"
                if role
                else "name the model's endpoint URL or directory",
            )
        )
    api_key_env = options.api_key_env
    if not api_key_env:
        api_key_env = f"{prefix}_API_KEY" if env.get(f"{prefix}_API_KEY") else "OPENAI_API_KEY"
    return ModelSpec(
        target=target,
        model=model or None,
        api_key_env=api_key_env,
        concurrency=options.concurrency,
        timeout_s=options.timeout_s,
        max_retries=options.max_retries,
        schema_retries=options.schema_retries,
        response_format=options.response_format,
        context_length=options.context_length,
        revision=options.revision,
        batch_size=options.batch_size,
    )


def option_problems(options: ClientOptions) -> list[Problem]:
    """What a client's options can say about themselves before anything runs (preflight collects these from
    each stage's config); endpoint, model and key are checked by the client's own probe instead."""
    from labpipe.llm.structured import STRUCTURED_MODES
    from labpipe.paramcheck import in_range, one_of

    return (
        in_range("concurrency", options.concurrency, 1, 4096)
        + in_range("context_length", options.context_length, 0)
        + one_of("response_format", options.response_format, STRUCTURED_MODES)
    )
