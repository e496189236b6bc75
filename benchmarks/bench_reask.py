"""Re-asks that can succeed: requests sent per completed record against llama.cpp's real server, before
and after the re-ask change, side by side on the same seeds.

"before": an unusable reply (cut or invalid JSON) was re-asked with the identical request (same seed,
same temperature, same max_tokens), so a deterministic server returned the same reply every time.
"after": each re-ask varies the seed (sampling a greedy request at 0.7), doubles the room of a reply cut
at max_tokens, and stops when the server repeats an unusable reply word for word. Both runs use the same
client otherwise (probe, context cap, final pass) and the same seed records, with fresh output folders.

The server is llama.cpp's (xllamacpp wheel) serving the tiny random model converted with
`labpipe model to-gguf`, with the JSON schemas enforced by its grammar: many replies are cut at
max_tokens, which is what exercises the re-asks. Needs: pip install xllamacpp gguf.

    python benchmarks/bench_reask.py [--fan-out-scale 0.2] [--seeds tests/unit/critique/data/seeds.jsonl]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from labpipe.generation.stage import GenerationConfig, run_generation
from labpipe.llm.openai_client import OpenAIChatClient
from labpipe.llm.options import ClientOptions
from labpipe.llm.types import ModelSpec

REPO = Path(__file__).resolve().parents[1]


class IdenticalReasks(OpenAIChatClient):
    """The behaviour before the change: re-asks resend the identical request, and never stop early."""

    VARY_REASKS = False
    STOP_ON_REPEAT = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, ctx: int, parallel: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "labpipe.models.llamacpp_server", "--model", str(gguf), "--port", str(port)]
    cmd += ["--ctx", str(ctx), "--parallel", str(parallel), "--alias", "tiny"]  # the name requests send
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama.cpp server did not start")


def run(label: str, cls, url: str, args, work: Path) -> dict:
    spec = ModelSpec(url, model="tiny", concurrency=args.concurrency, max_retries=2, backoff_base_s=0.05)
    client = cls(spec)
    started = time.monotonic()
    meta = run_generation(
        GenerationConfig(
            seeds=args.seeds,
            out=str(work / label),
            teacher=ClientOptions(endpoint=url, concurrency=args.concurrency),
            fan_out_scale=args.fan_out_scale,
            gate=False,
            progress=False,
            max_failed_share=1.0,
        ),
        client=client,
    )
    sent = client.stats.requests + client.stats.probes
    return {
        "label": label,
        "http_requests": sent,
        "planned_requests": meta["requests_sent"],
        "failed_requests": meta["requests_failed"],
        "records": meta["records"],
        "requests_per_record": sent / meta["records"] if meta["records"] else float("inf"),
        "requests_per_completed_request": sent / max(1, meta["requests_sent"] - meta["requests_failed"]),
        "tokens": meta["prompt_tokens"] + meta["completion_tokens"],
        "wall_s": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=str(REPO / "tests" / "unit" / "critique" / "data" / "seeds.jsonl"))
    parser.add_argument("--fan-out-scale", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    from labpipe.models.gguf_export import export_gguf
    from labpipe.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-reask-") as tmp:
        work = Path(tmp)
        gguf = export_gguf(build_tiny_model(work / "tiny"), work / "tiny.gguf")
        proc, url = start_server(gguf, args.ctx, args.parallel)
        try:
            rows = [
                run("before", IdenticalReasks, url, args, work),
                run("after", OpenAIChatClient, url, args, work),
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        "| run | HTTP requests | planned | failed | records | requests per record | per completed request | tokens | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['http_requests']} | {r['planned_requests']} | {r['failed_requests']} | "
            f"{r['records']} | {r['requests_per_record']:.2f} | {r['requests_per_completed_request']:.2f} | "
            f"{r['tokens']} | {r['wall_s']:.1f} |"
        )
    before, after = rows
    print(
        json.dumps(
            {
                "requests_per_record_ratio_before_over_after": before["requests_per_record"]
                / after["requests_per_record"]
            }
        )
    )


if __name__ == "__main__":
    main()
