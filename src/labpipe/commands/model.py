"""`labpipe model init-tiny --out DIR`: build the tiny offline model and tokenizer.
`labpipe model to-gguf --model DIR --out FILE.gguf`: the same model in llama.cpp's format."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", metavar="ACTION")
    tiny = model.add_parser("init-tiny", help="build a tiny Llama model + tokenizer with a chat template, offline")
    tiny.add_argument("--out", required=True, help="directory to write: new, empty or one labpipe wrote (a folder holding other files is refused)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(func=init_tiny)
    gguf = model.add_parser("to-gguf", help="write a Llama model directory as one GGUF file (for llama.cpp's server)")
    gguf.add_argument("--model", required=True, help="Hugging Face model directory (LlamaForCausalLM, BPE tokenizer)")
    gguf.add_argument("--out", required=True, help="GGUF file to write (appears when complete)")
    gguf.set_defaults(func=to_gguf)


def init_tiny(args: argparse.Namespace) -> int:
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    out = build_tiny_model(args.out, TinyModelConfig(seed=args.seed))
    print(f"tiny model written to {out}")
    return 0


def to_gguf(args: argparse.Namespace) -> int:
    from labpipe.models.gguf_export import export_gguf

    print(f"GGUF written to {export_gguf(args.model, args.out)}")
    return 0
