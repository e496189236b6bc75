"""What a component imports, followed through the labpipe modules it reaches (static, by AST).

Function-level imports count (labpipe imports heavy packages lazily), so the result is every third-party
top-level module a task can import at run time: what its image must install.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# installed package -> repository folder (setup.py's ROOT_PACKAGES, plus src/)
PACKAGE_DIRS = {
    "labpipe.components": ROOT / "components",
    "labpipe.pipelines": ROOT / "pipelines",
    "labpipe.sample_taxonomy": ROOT / "taxonomy",
    "labpipe": ROOT / "src" / "labpipe",
}


def module_file(name: str) -> Path | None:
    """The source file of a labpipe module (a repository path), or None when `name` is not a module."""
    for package, folder in PACKAGE_DIRS.items():
        if name == package or name.startswith(package + "."):
            rel = name[len(package):].lstrip(".")
            base = folder.joinpath(*rel.split(".")) if rel else folder
            candidates = [base / "__init__.py"] + ([base.with_suffix(".py")] if rel else [])
            return next((c for c in candidates if c.is_file()), None)
    return None


def _imported_names(tree: ast.AST, current: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the current package
                parts = current.split(".")[: -node.level]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def third_party_imports(source: str) -> set[str]:
    """Top-level third-party modules `source` (a component's code) can import, through labpipe."""
    external: set[str] = set()
    queue, seen = [("__component__", source)], set()
    while queue:
        current, text = queue.pop()
        for name in _imported_names(ast.parse(text), current):
            top = name.split(".")[0]
            if top == "labpipe":
                path = module_file(name)
                if path is not None and name not in seen:
                    seen.add(name)
                    # relative imports resolve against the package: a package's own name stands for its __init__
                    queue.append((f"{name}.__init__" if path.name == "__init__.py" else name, path.read_text()))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external
