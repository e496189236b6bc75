"""KFP component: review the leaves a taxonomy contribution changes (labpipe.review), a verdict per leaf."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))  # the judge prompts are in this image
def review(
    taxonomy: str,
    ref: str,
    base: str,
    base_model: str,
    teacher: str,
    teacher_model: str,
    judge: str,
    judge_model: str,
    run_id: str,
    tracking_uri: str,
    result: Output[Artifact],
    page: Output[HTML],
    summary: Output[Markdown],
    sample_size: int = 2,
    generation_gate: bool = True,
    critique_profile: str = "lab",
    chunk_tokens: int = 1000,
    seed: int = 42,
    generation_cache: str = "",
    response_format: str = "auto",
    questions: str = "",
    known_threshold: float = 8.0,
    known_model: str = "",
    known_model_name: str = "",
    production_model_name: str = "labpipe-model",
) -> str:
    """The overall verdict (pass | warn | fail); result: a folder with review.json/.md/.html, page and
    summary: the HTML page and the Markdown summary. Teacher and judge replies go to `generation_cache`.
    Empty teacher/judge fall back to the TEACHER_* / JUDGE_* variables of the mounted secrets."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.llm.options import ClientOptions
    from labpipe.review.stage import ReviewConfig, run_review

    totals = run_review(ReviewConfig(
        taxonomy=taxonomy, ref=ref, base=base, out=result.path, html_out=page.path, md_out=summary.path,
        base_model=base_model, teacher=ClientOptions(teacher, teacher_model, response_format=response_format),
        judge=ClientOptions(judge, judge_model, response_format=response_format),
        sample_size=sample_size, generation_gate=generation_gate, critique_profile=critique_profile,
        chunk_tokens=chunk_tokens, seed=seed, generation_cache=generation_cache,
        questions=questions, known_threshold=known_threshold, known_model=known_model,
        known_model_name=known_model_name, production_model_name=production_model_name,
        run_id=run_id, tracking_uri=tracking_uri,
    ))  # fmt: skip
    result.metadata.update(totals)
    return "fail" if totals["fail"] else "warn" if totals["warn"] else "pass"
