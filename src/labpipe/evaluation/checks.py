"""What the evaluation task's config can say about itself before anything runs (preflight). The judge is
checked by the client's own probe (labpipe.llm), the MT-Bench data by its loader (preflight's network part)."""

from __future__ import annotations

from labpipe.errors import Problem
from labpipe.evaluation.candidate import CandidateEvalConfig
from labpipe.paramcheck import in_range, one_of, problem

CHECKPOINT_SELECTIONS = ("last", "best")
PIPELINE_ENGINES = ("hf", "vllm", "llamacpp")  # labpipe.evaluation.engines; endpoint: CLI only


def problems(cfg: CandidateEvalConfig) -> list[Problem]:
    return (
        in_range("max_questions", cfg.max_questions, 0, 80)
        + in_range("max_new_tokens", cfg.max_new_tokens, 1, 65_536)
        + in_range("tolerance", cfg.tolerance, 0.0, 10.0)
        + in_range("judge_attempts", cfg.judge_attempts, 1, 20)
        + in_range("engine_gpus", cfg.engine_gpus, 1, 64)
        + one_of("checkpoint_selection", cfg.checkpoint_selection, CHECKPOINT_SELECTIONS)
        + one_of("engine", cfg.engine, PIPELINE_ENGINES)
    )


def serve_problems(serve: str) -> list[Problem]:
    """publish's InferenceService name (serve=NAME), checked before the run trains for hours."""
    from labpipe.evaluation.serving import NAME_RE

    if not serve or NAME_RE.fullmatch(serve):
        return []
    return [
        problem(
            "serve",
            f"{serve!r} is not a valid InferenceService name",
            "pass a DNS label: lower-case letters, digits and '-', starting with a letter, at most 63 "
            "characters (e.g. serve=granite-lab)",
        )
    ]
