"""Branch evaluation over endpoints (deterministic fake OpenAI-compatible servers, see
test_mt_bench_endpoints.py): seed examples of changed leaves judged against their seed answers."""

from __future__ import annotations

import json

from labpipe.evaluation.branch import run_branch_eval
from labpipe.evaluation.fastchat_io import read_judgments
from labpipe.evaluation.stage import EvalConfig
from labpipe.llm.options import ClientOptions
from tests.support.fake_openai import FakeOpenAIServer

RECORDS = [  # the shape of labpipe.taxonomy seed records
    {
        "leaf_id": "compositional_skills/writing/haiku",
        "kind": "freeform_skill",
        "status": "modified",
        "seed_examples": [
            {"question": "Write a haiku about rain.", "answer": "Soft rain on the roof"},
            {"question": "Write a haiku about snow.", "answer": "White hush on the hills"},
        ],
    },
    {
        "leaf_id": "knowledge/science/tides",
        "kind": "knowledge",
        "status": "added",
        "seed_examples": [
            {
                "question": "What causes tides?",
                "answer": "The Moon's gravity.",
                "context": "Tides are caused mainly by the Moon.",
            }
        ],
    },
    {
        "leaf_id": "compositional_skills/old",
        "kind": "freeform_skill",
        "status": "deleted",
        "seed_examples": [],
    },
]


def judge(request):
    user = request["messages"][1]["content"]
    assert "[The Start of Reference Answer]" in user  # judged against the seed answer
    answer = user.split("[The Start of Assistant's Answer]")[1]
    if "haiku about snow" in user and "short" in answer:
        return "Better than the candidate's. Rating: [[9]]"
    return "Rating: [[8]]" if "thorough" in answer else "Rating: [[5]]"


def test_branch_improvements_regressions_new(tmp_path, shared_data):
    records = tmp_path / "seeds.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    with (
        FakeOpenAIServer(lambda r: "A thorough answer.", model="cand") as cand,
        FakeOpenAIServer(lambda r: "A short answer.", model="base") as base,
        FakeOpenAIServer(judge, model="gpt-4") as judge_server,
    ):
        meta = run_branch_eval(
            EvalConfig(
                model=cand.base_url,
                model_endpoint_name="cand",
                base_model=base.base_url,
                base_endpoint_name="base",
                judge=ClientOptions(endpoint=judge_server.base_url, model="gpt-4"),
                judge_prompts=str(shared_data / "mt_bench" / "judge_prompts.jsonl"),
                out=str(tmp_path / "branch"),
            ),
            str(records),
        )
    assert (meta["branch.improvements"], meta["branch.regressions"], meta["branch.new"]) == (1, 1, 1)
    result = json.loads((tmp_path / "branch" / "branch.json").read_text())
    assert result["regressions"] == [
        {
            "question_id": "compositional_skills/writing/haiku#2",
            "leaf": "compositional_skills/writing/haiku",
            "candidate": 8,
            "base": 9,
        }
    ]
    assert result["new"][0]["leaf"] == "knowledge/science/tides"
    judgments = read_judgments(str(tmp_path / "branch" / "model_judgment" / "gpt-4_single.jsonl"))
    assert len(judgments) == 6 and {j.judge[1] for j in judgments} == {"single-math-v1"}
    assert "Tides are caused mainly by the Moon." in judgments[-1].user_prompt
    report = (tmp_path / "branch" / "report.md").read_text()
    assert "compositional_skills/writing/haiku" in report and "Judge's rationale: Rating: [[8]]" in report
