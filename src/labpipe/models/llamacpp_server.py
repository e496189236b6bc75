"""llama.cpp's own HTTP server (from the prebuilt `xllamacpp` wheel) as a process: for tests and laptops.

    python -m labpipe.models.llamacpp_server --model tiny.gguf --port 8080 [--ctx 2048 --parallel 2]

Serves the OpenAI-compatible API at http://127.0.0.1:PORT/v1 until SIGTERM/SIGINT. The context is split
across the `--parallel` slots (each request gets ctx / parallel tokens), as llama-server does. Make a GGUF
of a Hugging Face model directory with `labpipe model to-gguf`.
"""

from __future__ import annotations

import argparse
import signal
import threading


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="llama.cpp's server (xllamacpp) on 127.0.0.1")
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ctx", type=int, default=2048, help="context tokens, split across the slots")
    parser.add_argument("--parallel", type=int, default=2, help="slots (requests decoded together)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--alias", default="", help="the model name the server lists and accepts")
    args = parser.parse_args(argv)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    if args.alias:
        params.model_alias = {args.alias}  # a set of names in xllamacpp (a str would be its characters)
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)  # listens until this process ends
    print(f"http://{args.host}:{args.port}/v1", flush=True)
    stop.wait()
    del server


if __name__ == "__main__":
    main()
