"""The package's shape, checked from its source: imports only go down, no circles, small modules,
one door to the environment. docs/architecture.md explains the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "src" / "peerqa"

# Bottom up. A module may import from its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, set[str]]] = [
    ("ground", {"errors", "text", "types"}),
    ("config", {"settings", "tuning"}),
    ("ingest", {"corpus", "readers", "chunking", "tables", "records", "lexical",
                "generation", "store", "openai_client"}),
    ("models", {"embeddings"}),
    ("index", {"indexing"}),
    ("search", {"fusion", "retrieval", "ranking", "late", "live"}),
    ("answer", {"answer"}),
    ("facade", {"assistant", "__init__"}),
    ("faces", {"markup", "cards", "render", "serving", "app", "cli", "evaluation", "llama_index",
               "__main__"}),
]
FACES = {"app", "cli", "evaluation"}
"""Faces may import peerqa modules inside a function, to keep start-up fast."""
FACADE_SHORTCUTS = {("assistant", "llama_index")}
"""The one import that goes up: ``Assistant.as_retriever``, ``as_query_engine`` and
``from_documents`` are shortcuts to the llama-index face, imported inside those methods only
(importing llama-index would make `import peerqa` cost 4 times the CPU). The face never needs
the facade at run time (it takes an Assistant as an argument), so this edge is left out of the
circle check."""
LAZY_THIRD_PARTY = {
    # Heavy packages imported on first use, only by the module that wraps them.
    "openai": {"openai_client"},
    "httpx": {"openai_client"},
    "chromadb": {"generation"},
    "gradio": {"app"},
    "starlette": {"serving"},
    "llama_index": {"evaluation", "llama_index"},
    "pydantic": {"evaluation", "llama_index"},
    "pypdf": {"readers"},
    "docx": {"readers"},
    "lxml": {"readers"},
    "tqdm": {"render"},
    "onnxruntime": {"embeddings"},
    "onnx": {"embeddings"},
    "bm25s": {"lexical"},
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Dotted names below peerqa ("answer.judge", "app") -> their files."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"peerqa.{module} is in no layer: add it to LAYERS and the docs")


def _target(module: str, node: ast.ImportFrom | ast.Import, path: Path) -> list[str]:
    """The peerqa modules an import statement names (dotted, without 'peerqa.')."""
    found = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith("peerqa."):
                found.append(alias.name.removeprefix("peerqa."))
        return found
    if node.level == 0:
        if node.module and node.module.startswith("peerqa"):
            base = node.module.removeprefix("peerqa").lstrip(".")
            found.append(base)
        return found
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    base = package[: len(package) - (node.level - 1)]
    if node.module:
        base = [*base, *node.module.split(".")]
    dotted = ".".join(base)
    if node.module is None:  # from . import x
        return [".".join([*base, a.name]) for a in node.names]
    return [dotted]


def _imports(function_level: bool | None = None) -> list[tuple[str, str, int, ast.AST]]:
    """(importing module, imported peerqa module, line, node) for every import."""
    out = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside |= {id(n) for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if function_level is not None and (id(node) in inside) != function_level:
                continue
            for target in _target(module, node, path):
                if target:
                    out.append((module, target, node.lineno, node))
    return out


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def _shortcut(src: str, dst: str, function_level: bool) -> bool:
    """Whether an import is one of the facade's llama-index shortcuts, inside a method."""
    return function_level and (src, dst.split(".")[0]) in FACADE_SHORTCUTS


def test_imports__never_reach_a_higher_layer():
    inside = {(src, line) for src, _, line, _ in _imports(function_level=True)}
    upward = [
        f"peerqa.{src} (layer {LAYERS[_layer(src)][0]}) imports peerqa.{dst} "
        f"(layer {LAYERS[_layer(dst)][0]}) at line {line}"
        for src, dst, line, _ in _imports() if _layer(dst) > _layer(src)
        and not _shortcut(src, dst, (src, line) in inside)
    ]
    assert upward == []


def test_imports__the_facade_reaches_the_llama_index_face_only_inside_its_shortcuts():
    at_module_level = [
        (src, dst, line) for src, dst, line, _ in _imports(function_level=False)
        if (src, dst.split(".")[0]) in FACADE_SHORTCUTS
    ]
    assert at_module_level == []
    inside = [(src, dst) for src, dst, _, _ in _imports(function_level=True)
              if (src, dst.split(".")[0]) in FACADE_SHORTCUTS]
    assert inside, "the shortcuts are gone: drop FACADE_SHORTCUTS"


def test_imports__form_no_circle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    inside = {(src, line) for src, _, line, _ in _imports(function_level=True)}
    for src, dst, line, _ in _imports():
        if _shortcut(src, dst, (src, line) in inside):
            continue
        target = dst if dst in MODULES else dst.rsplit(".", 1)[0]
        if target in MODULES and target != src:
            graph[src].add(target)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_function_level_imports__only_for_start_up_time_in_faces_or_heavy_libraries():
    misplaced = [
        f"peerqa.{src} imports peerqa.{dst} inside a function (line {line})"
        for src, dst, line, _ in _imports(function_level=True)
        if src.split(".")[0] not in FACES and not _shortcut(src, dst, True)
    ]
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top == "peerqa":
                        continue
                    allowed = LAZY_THIRD_PARTY.get(top, set())
                    if module.split(".")[0] not in allowed:
                        misplaced.append(f"peerqa.{module} imports {name} inside {fn.name}()")
    assert misplaced == []


def test_modules__stay_under_500_lines():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


ENVIRONMENT_DOORS = {
    ("settings", "_cache_root"),  # where the default index lives (XDG_CACHE_HOME)
    ("text", "encoding"),  # tiktoken's own cache variable, pointed at the bundled file
    ("app", "main"),  # Gradio's and huggingface_hub's variables, before they start
}


def test_environment__read_only_through_settings():
    found = set()
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owner: dict[int, str] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    owner.setdefault(id(node), fn.name) if node is not fn else None
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"} \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                found.add((module, owner.get(id(node), "<module>")))
    assert {f for f in found if f[1] == "<module>"} == set(), "importing touches no variable"
    assert found <= ENVIRONMENT_DOORS, found - ENVIRONMENT_DOORS
