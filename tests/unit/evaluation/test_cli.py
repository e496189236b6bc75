from labpipe.cli import main


def test_score_prints_the_reference_table(shared_data, capsys):
    path = (
        shared_data
        / "mt_bench_judgments/third_party/muhan421__fastchat-eval/model_judgment/gpt-4_single.jsonl"
    )
    assert (
        main(
            [
                "evaluate",
                "mt-bench",
                "score",
                "--judgments",
                str(path),
                "--questions",
                str(shared_data / "mt_bench"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["claude-3-5-sonnet-20240620", "9.237500", "9.175000", "9.206250"]
    assert out[2].split()[:4] == ["claude-3-opus-20240229", "9.043750", "8.306250", "8.675000"]
    assert any(line.startswith("coding") for line in out)


def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "j.jsonl"
    bad.write_text('{"question_id": 81, "model": "m", "judge": ["gpt-4", "single-v1"], "turn": 1}\n')
    assert main(["evaluate", "mt-bench", "score", "--judgments", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{bad}:1:1: error: schema [score]")
    assert main(["evaluate", "mt-bench", "--model", "m", "--judge", "j"]) == 1
    assert "--out is required" in capsys.readouterr().err
