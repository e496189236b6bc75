from labpipe.evaluation.gate import decide_gate, gate_from_metrics


def test_publishes_only_when_better_than_base_and_production():
    d = decide_gate(6.5, 6.0, 6.2, tolerance=0.0)
    assert (
        d["publish"]
        and any("beats base" in r for r in d["reasons"])
        and any("production" in r for r in d["reasons"])
    )
    d = decide_gate(6.5, 6.0, 6.8, tolerance=0.1)
    assert not d["publish"] and any("is below production 6.800" in r for r in d["reasons"])


def test_tolerance_absorbs_judge_noise():
    assert decide_gate(5.95, 6.0, None, tolerance=0.1)["publish"]
    assert not decide_gate(5.85, 6.0, None, tolerance=0.1)["publish"]
    assert decide_gate(6.0, 6.0, None, tolerance=0.0)["publish"]  # equal passes at tolerance 0


def test_invalid_or_missing_scores_never_publish():
    assert not decide_gate(9.0, 1.0, None, invalid=True)["publish"]
    assert not decide_gate(None, 6.0, None)["publish"]
    assert not decide_gate(7.0, None, None)["publish"]
    d = decide_gate(7.0, 6.0, None, production_note="cannot compare: m version 3 has no mt_bench.overall tag")
    assert not d["publish"] and d["reasons"][-1].startswith("cannot compare")


def test_gate_reads_run_mt_bench_metrics():
    metrics = {
        "invalid": False,
        "candidate": "candidate",
        "base": "base",
        "judge": "gpt-4",
        "scores": {"candidate": {"overall": 7.0, "turn1": 7.5}, "base": {"overall": 6.0}},
    }
    d = gate_from_metrics(metrics, tolerance=0.0)
    assert (
        d["publish"] and d["candidate"] == 7.0 and d["base"] == 6.0 and d["candidate_scores"]["turn1"] == 7.5
    )
    metrics["invalid"], metrics["scores"] = True, {}
    assert not gate_from_metrics(metrics)["publish"]
