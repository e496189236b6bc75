"""The layout rules of CONTRIBUTING.md, checked on the source (pure: files and `ast`, nothing imported).

(a) no library module over 500 lines; (b) no component over 60 lines; (c) no import circle among labpipe's
top-level packages and modules; (d) no import of a higher layer (LAYERS below); (e) the library never imports
kfp. Imports inside functions count as much as module-level ones: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "labpipe"
# src/labpipe/components and src/labpipe/pipelines may be symlinks to the top-level folders (a checkout's
# development install): those are the KFP wrappers, not the library
WRAPPERS = ("components", "pipelines")
MAX_MODULE_LINES = 500
MAX_COMPONENT_LINES = 60

# Layers, low -> high: a unit imports only its own layer or lower ones. One line of why per entry (what it
# imports today, and who needs it).
LAYERS: list[dict[str, str]] = [
    {
        "errors": "UserError and Problem: everybody raises them, they import nothing of labpipe",
        "paths": "where the checkout's folders are: the standard library only",
        "storage": "local and s3:// paths, atomic outputs: needs only errors",
        "net": "proxies and CA bundles for every HTTP client: needs only errors",
        "sample_taxonomy": "data only (the sample taxonomy's files, installed as a package)",
        "paramcheck": "the range/choice checks the stages' problems() share: needs only errors",
        "runconfig": "the pipeline's parameters as one dataclass: imports nothing of labpipe",
    },
    {
        "llm": "the chat clients and reply cache: errors, net, storage and models' content digest",
        "models": "tiny model, GGUF export, model identity, llama.cpp launcher: errors and storage",
        "runs": "MLflow tracking, lineage, progress, the run view and report: errors and storage",
    },
    {
        "registry": "production model, publishing, Kubeflow Model Registry: runs (lineage tags) and storage",
        "retry_guard": "a retried task's refusal to redo paid work: runs and storage; the stages call it",
    },
    {
        "taxonomy": "diff, validation, seeds: registry (the production base), runs, models (tokenizer)",
        "generation": "synthetic data through llm, recorded with runs, guarded by retry_guard",
        "critique": "filters generation's output with llm judges (generation's flows and records)",
        "training": "SFT: models, runs, storage, llm (its chat template checks)",
        "evaluation": "MT-Bench and the gate: llm, models, runs, training (checkpoint selection)",
        "review": "a contribution's review: runs taxonomy, generation, critique, evaluation, registry",
    },
    {
        "preflight": "checks every stage's settings before a run: imports the stages and registry",
        "commands": "the CLI's commands: each imports its stage (and pipelines to compile/submit)",
        "cli": "the entry point: errors, net, storage at start-up; commands lazily",
        "taskio": "what every component does before and after its one call: errors, runs (lineage)",
        "components": "the KFP components: thin wrappers that call the stages",
        "pipelines": "the KFP pipelines: wire the components",
    },
]
LAYER = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def library_files() -> Iterator[Path]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] not in WRAPPERS:
            yield path


def unit_of(path: Path) -> str:
    """The top-level package or module of `path`: src/labpipe/llm/client.py -> llm, src/labpipe/net.py -> net."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(imported module name, line) for every import in `path`, module-level or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: against the module's package
                package = module.split(".")[: len(module.split(".")) - node.level]
                name = ".".join(package + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, node.lineno
            if name == "labpipe":  # `from labpipe import storage`: the unit is the imported name
                for alias in node.names:
                    yield f"labpipe.{alias.name}", node.lineno


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
    return ".".join(["labpipe", *parts]) + (".__init__" if rel.name == "__init__" else "")


def unit_graph() -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) -> where ("path:line"), across the library."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in library_files():
        if path.parent == SRC and path.name == "__init__.py":
            continue  # the package itself
        src = unit_of(path)
        for name, line in imports(path, module_name(path)):
            parts = name.split(".")
            if parts[0] == "labpipe" and len(parts) > 1 and parts[1] != src:
                edges.setdefault((src, parts[1]), []).append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_library_module_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in library_files()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules (at most {MAX_MODULE_LINES} lines): {long}"


def test_no_component_over_60_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "components").glob("*/component.py"))
        if (n := len(p.read_text().splitlines())) > MAX_COMPONENT_LINES
    }
    assert long == {}, f"components are thin wrappers (at most {MAX_COMPONENT_LINES} lines): {long}"


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in library_files() if not (p.parent == SRC and p.name == "__init__.py")}
    imported = {b for _, b in unit_graph()}
    assert sorted((units | imported) - set(LAYER)) == [], (
        "add it to LAYERS (or the import names a module gone)"
    )


def test_no_import_circle_between_packages():
    edges = unit_graph()
    found = {
        " <-> ".join(c): sorted(f"{a} -> {b}: {edges[(a, b)][0]}" for a, b in edges if a in c and b in c)
        for c in cycles(edges)
    }
    assert found == {}, f"import circles (unit -> unit: first place): {found}"


def test_no_upward_import():
    upward = sorted(
        f"{a} (layer {LAYER[a]}) -> {b} (layer {LAYER[b]}): {', '.join(where)}"
        for (a, b), where in unit_graph().items()
        if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]
    )
    assert upward == []


def test_no_module_under_src_imports_kfp():
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in library_files()
        for name, line in imports(path, module_name(path))
        if name.split(".")[0] == "kfp"
    ]
    assert offenders == []


def test_the_checks_see_what_they_check():
    """The graph is not empty and finds a circle and an upward import where there is one (the checks can fail)."""
    edges = unit_graph()
    assert ("llm", "errors") in edges and ("commands", "training") in edges
    assert cycles({("a", "b"): ["x"], ("b", "c"): ["y"], ("c", "a"): ["z"], ("c", "d"): ["w"]}) == [
        ["a", "b", "c"]
    ]
    assert LAYER["errors"] < LAYER["llm"] < LAYER["registry"] < LAYER["training"] < LAYER["cli"]
