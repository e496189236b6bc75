"""What a generation config can say about itself before anything runs (preflight). The client's settings
(endpoint, model, key) are checked by the client's own probe (labpipe.llm), not here."""

from __future__ import annotations

from labpipe.errors import Problem
from labpipe.generation.stage import GenerationConfig
from labpipe.paramcheck import in_range, one_of

RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "prompt")


def problems(cfg: GenerationConfig) -> list[Problem]:
    return in_range("max_failed_share", cfg.max_failed_share, 0.0, 1.0) + one_of(
        "response_format", cfg.response_format, RESPONSE_FORMATS
    )
