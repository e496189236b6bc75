"""KFP components: MT-Bench for the candidate vs the base, the report, and the gate's decision.

Two images, one body: `mt_bench_eval` (the evaluation image: in-process answers, or llama.cpp) and
`mt_bench_eval_gpu` (the GPU evaluation image, vLLM pinned: the pipeline runs it on GPUs when
evaluation_engine=vllm). KFP fixes a component's image when compiling, hence two components.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output
from labpipe.components.images import image_for


@dsl.component(base_image=image_for("evaluation"))
def mt_bench_eval(candidate: Input[Model], base_model: str, judge: str, judge_model: str, judge_secret: str,
                  questions: str, max_questions: int, production_model_name: str, tolerance: float, run_id: str,
                  tracking_uri: str, metrics: Output[Metrics], report: Output[HTML], decision: Output[Artifact],
                  max_new_tokens: int = 1024, checkpoint_selection: str = "last", engine: str = "hf",
                  generation_cache: str = "off", judge_attempts: int = 3, context_length: int = 0) -> bool:
    """MT-Bench for the skill phase's model (or its best checkpoint) vs the base; report; gate (for dsl.If).

    judge_secret names the Kubernetes secret mounted as JUDGE_ENDPOINT / JUDGE_MODEL / JUDGE_API_KEY.
    """
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.evaluation.candidate import evaluation_task
    from labpipe.llm.options import ClientOptions

    return evaluation_task(
        candidate, metrics, report, decision, base_model=base_model,
        judge=ClientOptions(judge, judge_model, secret=judge_secret, context_length=int(context_length)),
        questions=questions, max_questions=max_questions, max_new_tokens=max_new_tokens,
        checkpoint_selection=checkpoint_selection, production_model_name=production_model_name,
        tolerance=tolerance, engine=engine, cache=generation_cache, judge_attempts=int(judge_attempts),
        run_id=run_id, tracking_uri=tracking_uri,
    )


@dsl.component(base_image=image_for("evaluation-gpu"))
def mt_bench_eval_gpu(candidate: Input[Model], base_model: str, judge: str, judge_model: str, judge_secret: str,
                      questions: str, max_questions: int, production_model_name: str, tolerance: float,
                      run_id: str, tracking_uri: str, metrics: Output[Metrics], report: Output[HTML],
                      decision: Output[Artifact], max_new_tokens: int = 1024, checkpoint_selection: str = "last",
                      engine: str = "vllm", generation_cache: str = "off", judge_attempts: int = 3,
                      context_length: int = 0) -> bool:
    """The same on the GPU evaluation image: the models under test served by vLLM on the task's GPUs."""
    from labpipe.errors import clean_user_errors

    clean_user_errors()  # a UserError prints its problems, no traceback
    from labpipe.evaluation.candidate import evaluation_task
    from labpipe.llm.options import ClientOptions

    return evaluation_task(
        candidate, metrics, report, decision, base_model=base_model,
        judge=ClientOptions(judge, judge_model, secret=judge_secret, context_length=int(context_length)),
        questions=questions, max_questions=max_questions, max_new_tokens=max_new_tokens,
        checkpoint_selection=checkpoint_selection, production_model_name=production_model_name,
        tolerance=tolerance, engine=engine, cache=generation_cache, judge_attempts=int(judge_attempts),
        run_id=run_id, tracking_uri=tracking_uri,
    )
