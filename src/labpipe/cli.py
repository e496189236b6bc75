"""`labpipe <command> ...`: every LAB stage runnable alone, plus run | compile | submit | schedule | lineage.

Each command group lives in labpipe.commands.<name> and exposes `register(subparsers)`. Handlers import
their heavy dependencies (torch, mlflow, kfp) lazily so that `labpipe --help` stays fast.
A UserError is printed as one line per problem and exits 1, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from labpipe.errors import UserError

COMMAND_MODULES = ["taxonomy", "model", "generation", "training", "evaluation", "pipeline"]
COMMAND_MODULES += ["runs"]  # labpipe runs: recent pipeline runs (labpipe.commands.runs)
COMMAND_MODULES += ["review"]  # labpipe review: a taxonomy contribution before merging (labpipe.commands.review)


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already names it (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS or default in ("", [])
        if not action.option_strings or "default" in text.lower() or nothing or action.required:
            return text
        return f"{text} (default: %(default)s)"


def _with_defaults_shown(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpWithDefaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _with_defaults_shown(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labpipe", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--ca-bundle", metavar="PEM",
                        help="private CA certificate(s) to trust, added to the public roots, for every endpoint, "
                             "git, S3, MLflow and the KFP server (default: $LABPIPE_CA_BUNDLE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"labpipe.commands.{name}").register(sub)
    _with_defaults_shown(parser)
    return parser


def report(err: UserError) -> None:
    for problem in err.problems:
        print(str(problem), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from labpipe import net

        if getattr(args, "ca_bundle", None):
            os.environ[net.CA_ENV] = os.path.abspath(args.ca_bundle)
        net.configure()
        from labpipe.storage import cache_dir

        # torch's compile cache goes with ours, not into $TMPDIR/torchinductor_<user> (left there for good)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))
        return int(args.func(args) or 0)
    except UserError as err:
        report(err)
        return 1
    except KeyboardInterrupt:
        print("interrupted; completed work is kept and a rerun with the same --out resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
