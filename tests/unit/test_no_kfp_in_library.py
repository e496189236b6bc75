"""`labpipe --help` imports no heavy module. That the library never imports kfp (components/ and pipelines/ wrap
it, ARCHITECTURE.md) is checked with the other layout rules in test_architecture.py."""

from __future__ import annotations

import subprocess
import sys


def test_cli_startup_imports_no_heavy_modules():
    code = (
        "import sys, labpipe.cli as c; c.build_parser(); "
        "heavy = [m for m in ('kfp', 'torch', 'mlflow', 'transformers', 'trl') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"`labpipe --help` imports {out}; import them inside the command handlers"
