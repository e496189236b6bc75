"""The library never imports kfp: components/ and pipelines/ wrap it (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "labpipe"


def test_no_module_under_src_imports_kfp():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(SRC)}:{node.lineno}" for n in names if n.split(".")[0] == "kfp"]
    assert offenders == []


def test_cli_startup_imports_no_heavy_modules():
    code = (
        "import sys, labpipe.cli as c; c.build_parser(); "
        "heavy = [m for m in ('kfp', 'torch', 'mlflow', 'transformers', 'trl') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"`labpipe --help` imports {out}; import them inside the command handlers"
