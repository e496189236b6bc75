"""Single-answer grading as the reference does it, through the shared model-client interface.

Two ways to ask, one file format:
- "reference" (endpoint judges: GPT-4, a vLLM-served model): FastChat's prompts unchanged, temperature 0,
  up to 2048 tokens, the rating parsed from the text (`[[x]]`, then `[x]`).
- "structured" (in-process judges, e.g. the offline tiny model): the same prompt plus a JSON instruction,
  with the JSON schema of data/structured_judge.yaml enforced by the backend (grammar-constrained decoding),
  so a rating always exists; the verdict is stored as "<rationale>\n\nRating: [[x]]".
A call that fails, or a reply with no rating, is retried (up to `attempts` in all) with another seed and,
after the first try, at REASK_TEMPERATURE (a greedy judge would repeat the same unrated verdict); what still
fails is recorded with score -1 ("$ERROR$" for a failed call, with the server's reason in `error`),
excluded from the scores and counted; `JudgeRun.errors` groups the failed calls by kind.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from labpipe.evaluation.fastchat_io import Answer, Judgment
from labpipe.evaluation.prompts import JudgePrompt, judge_messages, structured_judge
from labpipe.evaluation.questions import Question
from labpipe.evaluation.ratings import ERROR_TEXT, NO_RATING, format_structured, parse_rating
from labpipe.runs.progress import emit

log = logging.getLogger(__name__)
REFERENCE_MAX_TOKENS = 2048  # fastchat/llm_judge/common.py: run_judge_single
REASK_TEMPERATURE = 0.7  # retries of an unrated or failed judgment (the first try is at 0, as FastChat's)


@dataclass
class JudgeRun:
    judgments: list[Judgment]
    excluded: Counter = field(
        default_factory=Counter
    )  # reason -> count: answer_error, judge_error, no_rating
    requests: int = 0  # judge calls made, retries included
    errors: Counter = field(default_factory=Counter)  # failed judge calls by kind (context_length, http...)
    error_examples: dict = field(default_factory=dict)  # kind -> the first full reason


def judge_answers(
    client,
    prompts: dict[str, JudgePrompt],
    questions: list[Question],
    answers: dict[str, list[Answer]],
    *,
    judge_name: str,
    structured: bool,
    attempts: int = 3,
) -> JudgeRun:
    """Judge every turn of every model's answers; judgments come back in (model, question, turn) order."""
    from labpipe.llm.types import ChatRequest, failure_kind

    spec = structured_judge() if structured else None
    by_qid = {q.question_id: q for q in questions}
    run = JudgeRun(judgments=[])
    pending: list[tuple[Judgment, list[dict[str, str]]]] = []
    for model, model_answers in answers.items():
        for answer in model_answers:
            question = by_qid[answer.question_id]
            for turn in range(1, len(question.turns) + 1):
                name, messages = judge_messages(prompts, question, answer.turns, turn)
                j = Judgment(
                    answer.question_id,
                    model,
                    (judge_name, name),
                    messages[1]["content"],
                    "",
                    NO_RATING,
                    turn,
                    attempts=0,
                )
                run.judgments.append(j)
                if ERROR_TEXT in answer.turns[:turn]:
                    j.judgment = ERROR_TEXT
                    run.excluded["answer_error"] += 1
                    continue
                if spec is not None:
                    messages = [
                        messages[0],
                        {"role": "user", "content": f"{messages[1]['content']}\n\n{spec.instruction}"},
                    ]
                    j.user_prompt = messages[1]["content"]  # the file records what the judge was sent
                pending.append((j, messages))

    for attempt in range(1, attempts + 1):
        if not pending:
            break
        requests = [
            ChatRequest(
                messages=messages,
                request_id=f"judge:{j.model}:{j.question_id}:{j.turn}:{attempt}",
                schema=spec.schema if spec else None,
                temperature=0.0 if attempt == 1 else REASK_TEMPERATURE,
                max_tokens=spec.max_tokens if spec else REFERENCE_MAX_TOKENS,
                seed=attempt - 1,
            )
            for j, messages in pending
        ]
        results = client.complete(requests)
        run.requests += len(requests)
        retry = []
        for (j, messages), result in zip(pending, results, strict=True):
            j.attempts = attempt
            if not result.ok:
                j.judgment, j.score, j.error = ERROR_TEXT, NO_RATING, result.error or ""
                retry.append((j, messages))
                continue
            j.error = ""
            if spec is not None and isinstance(result.data, dict) and "rating" in result.data:
                j.judgment = format_structured(str(result.data.get("rationale", "")), result.data["rating"])
            else:
                j.judgment = result.text
            j.score = parse_rating(j.judgment)
            if j.score == NO_RATING:
                retry.append((j, messages))
        pending = retry
        emit("mt_bench_eval", what="judged", model=judge_name, done=len(run.judgments) - len(pending),
             total=len(run.judgments), final=True)
    for j, _ in pending:
        reason = "judge_error" if j.judgment == ERROR_TEXT else "no_rating"
        run.excluded[reason] += 1
        if (
            reason == "no_rating"
        ):  # what the judge said instead of a rating, for the invalid evaluation's report
            run.error_examples.setdefault(
                "no_rating", f"no [[rating]] in the judge's reply: {j.judgment[:300]!r}"
            )
        if j.error:
            kind = failure_kind(j.error)
            run.errors[kind] += 1
            run.error_examples.setdefault(kind, j.error)
        log.warning(
            "judgment excluded (%s): model %s question %s turn %d%s",
            reason,
            j.model,
            j.question_id,
            j.turn,
            f": {j.error}" if j.error else "",
        )
    return run
