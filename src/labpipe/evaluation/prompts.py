"""The reference single-answer judge prompts (FastChat's judge_prompts.jsonl) and judge-request construction.

Prompt choice follows fastchat/llm_judge/gen_judgment.py: `single-v1` for turn 1, `single-math-v1` (with the
reference answer) for math, reasoning and coding, and their `-multi-turn` forms for turn 2, which show the
whole conversation and ask about the second answer. Messages are [system, user] as FastChat sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from labpipe.errors import Problem, UserError
from labpipe.evaluation import sources
from labpipe.evaluation.jsonl import iter_jsonl, require
from labpipe.evaluation.questions import Question

SINGLE_PROMPTS = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")
_PLACEHOLDERS = {
    "single-v1": {"question", "answer"},
    "single-math-v1": {"question", "answer", "ref_answer_1"},
    "single-v1-multi-turn": {"question_1", "answer_1", "question_2", "answer_2"},
    "single-math-v1-multi-turn": {
        "question_1",
        "answer_1",
        "question_2",
        "answer_2",
        "ref_answer_1",
        "ref_answer_2",
    },
}


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    system_prompt: str
    prompt_template: str
    output_format: str


def parse_judge_prompts(text: str, where: str) -> dict[str, JudgePrompt]:
    prompts: dict[str, JudgePrompt] = {}
    for lineno, obj in iter_jsonl(text, where):
        loc = f"{where}:{lineno}:1"
        name = require(obj, "name", str, loc)
        prompts[name] = JudgePrompt(
            name=name,
            system_prompt=require(obj, "system_prompt", str, loc),
            prompt_template=require(obj, "prompt_template", str, loc),
            output_format=require(obj, "output_format", str, loc),
        )
    missing = [n for n in SINGLE_PROMPTS if n not in prompts]
    if missing:
        raise UserError(
            Problem(
                where=where,
                rule="judge-prompts",
                message=f"missing prompts: {', '.join(missing)}",
                fix="use FastChat's data/judge_prompts.jsonl",
            )
        )
    for name in SINGLE_PROMPTS:
        try:
            prompts[name].prompt_template.format(**{k: "" for k in _PLACEHOLDERS[name]})
        except (KeyError, IndexError, ValueError) as exc:
            raise UserError(
                Problem(
                    where=where,
                    rule="judge-prompts",
                    field=name,
                    message=f"prompt_template has an unknown placeholder {exc}",
                )
            ) from None
    return prompts


def load_judge_prompts(
    source: str = "", *, data_dir: str = "", verify: bool = True
) -> dict[str, JudgePrompt]:
    location = sources.resolve(source, sources.JUDGE_PROMPTS, data_dir)
    data, _ = sources.fetch(location, sources.JUDGE_PROMPTS, verify=verify)
    return parse_judge_prompts(data.decode("utf-8"), location)


@dataclass(frozen=True)
class StructuredJudge:
    """How a grammar-constrained (in-process) judge is asked: see data/structured_judge.yaml."""

    instruction: str
    schema: dict[str, Any]
    max_tokens: int


@lru_cache(maxsize=1)
def structured_judge() -> StructuredJudge:
    import yaml

    where = "labpipe/evaluation/data/structured_judge.yaml"
    raw = yaml.safe_load(
        resources.files("labpipe.evaluation").joinpath("data/structured_judge.yaml").read_text()
    )
    schema = require(raw, "schema", dict, where)
    props = schema.get("properties", {})
    if set(props) != {"rationale", "rating"} or props["rating"].get("type") != "integer":
        raise UserError(
            Problem(
                where=where,
                rule="schema",
                field="schema",
                message="must define string `rationale` and integer `rating`",
            )
        )
    return StructuredJudge(
        require(raw, "instruction", str, where), schema, require(raw, "max_tokens", int, where)
    )


def select_prompt(question: Question, turn: int) -> str:
    base = "single-math-v1" if question.needs_reference else "single-v1"
    return base if turn == 1 else f"{base}-multi-turn"


def judge_messages(
    prompts: dict[str, JudgePrompt], question: Question, answer_turns: list[str] | tuple[str, ...], turn: int
) -> tuple[str, list[dict[str, str]]]:
    """(prompt name, [system, user] messages) for judging `turn` (1 or 2) of one answer."""
    name = select_prompt(question, turn)
    if question.needs_reference and len(question.reference) < turn:
        raise UserError(
            Problem(
                where=f"question {question.question_id}",
                rule="reference",
                field="reference",
                message=f"category {question.category} is judged against a reference answer, "
                f"but none was found for turn {turn}",
                fix="pass the reference answers (FastChat's reference_answer/gpt-4.jsonl)",
            )
        )
    prompt = prompts[name]
    kwargs: dict[str, str] = {}
    if question.needs_reference:
        kwargs["ref_answer_1"] = question.reference[0]
        if turn == 2:
            kwargs["ref_answer_2"] = question.reference[1]
    if turn == 1:
        user = prompt.prompt_template.format(question=question.turns[0], answer=answer_turns[0], **kwargs)
    else:
        user = prompt.prompt_template.format(
            question_1=question.turns[0],
            question_2=question.turns[1],
            answer_1=answer_turns[0],
            answer_2=answer_turns[1],
            **kwargs,
        )
    return name, [{"role": "system", "content": prompt.system_prompt}, {"role": "user", "content": user}]
