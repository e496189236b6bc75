"""Streamed generation with a client that cannot take follow-up requests (the in-process backend's
contract): driven in waves, same records and same requests as step by step."""

from __future__ import annotations

from labpipe.generation.stage import GENERATED, GenerationConfig, run_generation
from labpipe.llm.options import ClientOptions
from tests.unit.critique.fixtures import SEEDS, ScriptedClient


def test_waves_give_the_step_by_step_output(tmp_path):
    clients = {}
    for name, stream in (("steps", False), ("waves", True)):
        clients[name] = ScriptedClient(
            lambda req: RuntimeError("HTTP 500") if req.request_id[:1] in "0a" else None
        )
        run_generation(
            GenerationConfig(
                seeds=str(SEEDS), out=str(tmp_path / name), teacher=ClientOptions(endpoint="http://t/v1"), progress=False,
                fan_out_scale=0.5, stream=stream, generation_cache="off", max_failed_share=1.0,
            ),
            client=clients[name],
        )  # fmt: skip
    assert (tmp_path / "waves" / GENERATED).read_bytes() == (tmp_path / "steps" / GENERATED).read_bytes()
    assert (tmp_path / "steps" / GENERATED).read_text().count("\n") > 5
    ids = {n: sorted(r.request_id for r in c.requests) for n, c in clients.items()}
    assert ids["waves"] == ids["steps"] and len(set(ids["waves"])) == len(ids["waves"])
