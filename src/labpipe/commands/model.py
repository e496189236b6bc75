"""`labpipe model init-tiny --out DIR`: build the tiny offline model and tokenizer."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="model_command", metavar="ACTION")
    tiny = model.add_parser("init-tiny", help="build a tiny Llama model + tokenizer with a chat template, offline")
    tiny.add_argument("--out", required=True, help="directory to write (replaced atomically)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=init_tiny)


def init_tiny(args: argparse.Namespace) -> int:
    from labpipe.models.tiny import TinyModelConfig, build_tiny_model

    out = build_tiny_model(args.out, TinyModelConfig(seed=args.seed))
    print(f"tiny model written to {out}")
    return 0
