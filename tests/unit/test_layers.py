"""The import rules of docs/architecture.md, checked on every module's imports (part of `make test`).

What counts as an import: every `import` and `from … import` anywhere in a module — at the top,
inside functions, and under `if TYPE_CHECKING:` — and a module loaded by name (a string handed
to `importlib.import_module`, `find_spec` or the CLI's `_optional`, or listed in a `*_MODULES`
table). A deferred import still runs in the same process, and deferring one is the usual way a
cycle or an upward reference hides; a type-only import still makes the lower layer know the
upper one. So all of them count, for every rule. A command line (`python -m workers.cli`) is a
process, not an import, and does not count.

The rules:
1. No hot-path module (errors, config, messages, deadlines, stages, loop, kafka, telemetry)
   imports workers.tools, workers.cli or workers.localkafka.
2. No workers, schemas or pipelines module imports the `models` package (the toolchain); the
   runtime finds models on disk through `settings.models_dir`, and the `ontime models` verbs reach
   the CLI through the `ontime.cli` entry point.
3. Each module belongs to the layer of its longest prefix in LAYERS and imports only its own
   layer or the layers listed for it there.
4. No import cycle between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "schemas", "pipelines", "models")

HOT_PATH = (
    "workers.errors",
    "workers.config",
    "workers.messages",
    "workers.deadlines",
    "workers.stages",
    "workers.loop",
    "workers.kafka",
    "workers.telemetry",
)
TOOLS = ("workers.tools", "workers.cli", "workers.localkafka")

_BOTTOM = {"names", "errors", "config"}
# layer → (module prefixes, the other layers it may import). Bottom to top.
LAYERS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    # Reason codes: import nothing, so anyone (errors too) may use them.
    "names": (("workers.messages.reasons",), set()),
    "errors": (("workers.errors",), {"names"}),
    # The contracts shared with other languages; they spell names from reasons and messages.headers.
    "schemas": (("schemas",), {"names", "messages", "config", "errors"}),
    "config": (("workers.config",), {"names", "errors"}),
    "messages": (("workers.messages",), _BOTTOM),  # headers.py: names, and reading untrusted records
    "deadlines": (("workers.deadlines",), _BOTTOM | {"messages"}),
    # The hooks a stage or the loop reports through (no-op by default) and structured logs.
    "telemetry hooks": (("workers.telemetry.hooks", "workers.telemetry.logs"), _BOTTOM | {"messages"}),
    "stages": (("workers.stages",), _BOTTOM | {"schemas", "messages", "deadlines", "telemetry hooks"}),
    "kafka": (("workers.kafka",), _BOTTOM),
    "loop": (
        ("workers.loop",),
        _BOTTOM | {"messages", "deadlines", "telemetry hooks", "stages", "kafka"},
    ),
    # Tracing, metrics, health: beside the loop, plugged in through the hooks; neither imports the other.
    "telemetry": (("workers.telemetry",), _BOTTOM | {"schemas", "messages", "deadlines", "telemetry hooks"}),
    # Per-pipeline code (recordings, decoders): plugins the runtime loads by name, never statically.
    "pipelines": (("pipelines",), _BOTTOM | {"schemas", "messages"}),
    # The development broker; its secure variant applies the ACL table of workers/kafka/acls.py.
    "localkafka": (("workers.localkafka",), _BOTTOM | {"kafka"}),
    # The per-device aggregator (faust): its own service reading P.results, writing P.events.
    "aggregate": (("workers.aggregate",), _BOTTOM | {"schemas", "messages", "telemetry hooks", "kafka"}),
    "tools": (
        ("workers.tools",),
        _BOTTOM
        | {"schemas", "messages", "deadlines", "telemetry hooks", "stages", "kafka", "loop", "telemetry"}
        | {"pipelines", "localkafka", "aggregate"},
    ),
    "cli": (
        ("workers.cli",),
        _BOTTOM
        | {"schemas", "messages", "deadlines", "telemetry hooks", "stages", "kafka", "loop", "telemetry"}
        | {"pipelines", "localkafka", "aggregate", "tools"},
    ),
    "package roots": (("workers",), set()),
}


# -- the import graph ----------------------------------------------------------------------
def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name → file of every module in the project's packages."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


LOADERS = {"import_module", "__import__", "find_spec", "_optional"}
"""Calls whose string argument is a module that gets imported."""


def _dynamic(tree: ast.Module) -> list[str]:
    """Module names in string literals that get imported: loader arguments and `*_MODULES` tables."""
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in LOADERS:
                out += [
                    a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id.endswith("MODULES") for t in targets)
            if named and isinstance(node.value, ast.Tuple | ast.List | ast.Set):
                out += [
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
    return out


def imports_of(name: str, source: str, known: Iterable[str], is_package: bool = False) -> set[str]:
    """Project modules `name` imports: statements anywhere in it, and modules it loads by name."""
    known = set(known)
    tree = ast.parse(source)
    found: set[str] = set()

    def add(dotted: str) -> None:
        # The module itself if it is one of ours, else its nearest package that is.
        parts = dotted.split(".")
        while parts:
            if ".".join(parts) in known:
                found.add(".".join(parts))
                return
            parts.pop()
        if dotted.split(".")[0] in PACKAGES:
            found.add(dotted)  # a project name that does not exist here: still an import

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base)
    for text in _dynamic(tree):
        add(text)
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {
        name: imports_of(name, path.read_text(), files, path.name == "__init__.py")
        for name, path in files.items()
    }


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> str | None:
    best: tuple[int, str | None] = (-1, None)
    for layer, (prefixes, _) in LAYERS.items():
        for p in prefixes:
            if _under(module, [p]) and len(p) > best[0]:
                best = (len(p), layer)
    return best[1]


# -- the rules -----------------------------------------------------------------------------
def hot_path_violations(graph: Mapping[str, set[str]]) -> list[str]:
    return [
        f"{m} imports {d}"
        for m, deps in sorted(graph.items())
        if _under(m, HOT_PATH)
        for d in sorted(deps)
        if _under(d, TOOLS)
    ]


def models_violations(graph: Mapping[str, set[str]]) -> list[str]:
    return [
        f"{m} imports {d}"
        for m, deps in sorted(graph.items())
        if _under(m, ("workers", "schemas", "pipelines"))
        for d in sorted(deps)
        if _under(d, ("models",))
    ]


def layer_violations(graph: Mapping[str, set[str]]) -> list[str]:
    out: list[str] = []
    for m, deps in sorted(graph.items()):
        mine = layer_of(m)
        if mine is None:
            continue  # models/: the toolchain, outside the runtime's layers
        allowed = LAYERS[mine][1] | {mine}
        for d in sorted(deps):
            theirs = layer_of(d)
            if theirs is not None and theirs not in allowed:
                out.append(f"{m} ({mine}) imports {d} ({theirs})")
    return out


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# -- on the tree ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_runtime_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    assert [m for m in graph if _under(m, ("workers", "schemas", "pipelines")) and layer_of(m) is None] == []


def test_the_hot_path_imports_no_tool(graph: dict[str, set[str]]) -> None:
    assert hot_path_violations(graph) == []


def test_no_runtime_module_imports_models(graph: dict[str, set[str]]) -> None:
    assert models_violations(graph) == []


def test_layers_point_one_way(graph: dict[str, set[str]]) -> None:
    assert layer_violations(graph) == []


# Cycles that landed with other issues' work and are theirs to break (listed so that any new one fails).
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert [c for c in cycles(graph) if c not in KNOWN_CYCLES] == []


def test_the_allowed_imports_form_no_cycle_between_layers() -> None:
    edges = {layer: allowed - {layer} for layer, (_, allowed) in LAYERS.items()}
    assert cycles(edges) == []


# -- the checker catches what it should ----------------------------------------------------
def test_imports_in_functions_type_checking_and_loaded_by_name_count() -> None:
    known = {"workers.tools.demo", "workers.messages.codec", "workers.cli.main", "workers.loop.worker"}
    source = '''
"""Docstring naming workers.cli.main does not count."""
CMD = ["python", "-m", "workers.cli.main"]  # nor does a command line
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from workers.tools import demo
def f() -> None:
    import workers.loop.worker
    importlib.import_module("models.toolchain.cli")
VERB_MODULES = ("workers.tools.demo",)
'''
    found = imports_of("workers.messages.codec", source, known)
    assert found == {"workers.tools.demo", "workers.loop.worker", "models.toolchain.cli"}


def test_relative_imports_resolve() -> None:
    known = {"workers.stages.stage", "workers.stages.cache", "workers.stages"}
    found = imports_of("workers.stages.stage", "from .cache import LRU\nfrom . import cache\n", known)
    assert found == {"workers.stages.cache"}


def test_violations_are_reported() -> None:
    bad = {
        "workers.messages.codec": {"workers.tools.demo", "workers.stages.stage"},
        "workers.stages.model": {"models.toolchain.cli"},
        "workers.errors": {"workers.config.settings"},
    }
    assert hot_path_violations(bad) == ["workers.messages.codec imports workers.tools.demo"]
    assert models_violations(bad) == ["workers.stages.model imports models.toolchain.cli"]
    assert layer_violations(bad) == [
        "workers.errors (errors) imports workers.config.settings (config)",
        "workers.messages.codec (messages) imports workers.stages.stage (stages)",
        "workers.messages.codec (messages) imports workers.tools.demo (tools)",
    ]
    assert layer_of("workers.messages.reasons") == "names"
    assert layer_of("workers.messages.headers") == "messages"
    assert layer_of("workers.telemetry.metrics") == "telemetry"
    assert layer_of("workers.telemetry.hooks") == "telemetry hooks"


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_docs_architecture_states_these_rules() -> None:
    """The table in docs/architecture.md lists, layer by layer, what LAYERS allows."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("| layer | may import |") :].split("\n\n")[0]
    stated: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        layer, allowed = (cell.strip() for cell in line.strip("|").split("|"))
        name = layer.split(" (")[0]
        stated[name] = set() if allowed == "nothing" else {a.strip() for a in allowed.split(",")}
    assert set(stated) == set(LAYERS) - {"package roots"}
    for name, allowed in stated.items():
        if name in ("tools", "cli"):
            continue  # "everything above (except cli)": checked by the rule itself
        assert allowed == LAYERS[name][1], name
