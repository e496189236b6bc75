"""Answer generation: every question's turns answered by the model under test, batched across questions.

All first turns go to the client in one call (an in-process client batches them, an endpoint client runs
them concurrently), then all second turns, each with its conversation so far, as FastChat's
gen_model_answer / gen_api_answer build it. Temperatures are the reference's per-category values.
A turn that fails (after the client's retries; e.g. a prompt longer than the context) is recorded as
"$ERROR$" and its judgments are excluded and counted, never silently dropped.
"""

from __future__ import annotations

import logging

from labpipe.evaluation.fastchat_io import Answer
from labpipe.evaluation.questions import Question
from labpipe.evaluation.ratings import ERROR_TEXT
from labpipe.runs.progress import emit

log = logging.getLogger(__name__)


def generate_answers(
    client, questions: list[Question], model_id: str, *, max_new_tokens: int = 1024, seed: int = 0
) -> list[Answer]:
    from labpipe.llm.types import ChatRequest

    answers = [Answer(q.question_id, model_id, []) for q in questions]
    n_turns = max(len(q.turns) for q in questions)
    for turn in range(n_turns):
        todo = [
            (q, a) for q, a in zip(questions, answers, strict=True) if turn < len(q.turns) and not a.errors
        ]
        requests = []
        for q, a in todo:
            messages = []
            for i in range(turn):
                messages += [
                    {"role": "user", "content": q.turns[i]},
                    {"role": "assistant", "content": a.turns[i]},
                ]
            messages.append({"role": "user", "content": q.turns[turn]})
            requests.append(
                ChatRequest(
                    messages=messages,
                    request_id=f"{model_id}:{q.question_id}:{turn + 1}",
                    temperature=q.temperature,
                    max_tokens=max_new_tokens,
                    seed=seed,
                )
            )
        for (q, a), result in zip(todo, client.complete(requests), strict=True):
            if result.ok:
                a.turns.append(result.text.strip())
            else:
                log.warning("question %s turn %d: answer failed: %s", q.question_id, turn + 1, result.error)
                a.errors.append(f"turn {turn + 1}: {result.error}")
        emit("mt_bench_eval", what="answered", model=model_id, done=sum(len(a.turns) for a in answers),
             total=sum(len(q.turns) for q in questions), final=True)
    for q, a in zip(questions, answers, strict=True):  # failed turns and the turns after them
        a.turns += [ERROR_TEXT] * (len(q.turns) - len(a.turns))
    return answers
