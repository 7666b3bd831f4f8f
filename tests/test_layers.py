"""The package's layers (CONTRACT.md, "Package layers"), checked by reading every import
with ``ast``: imports inside functions count too, because that is where circles hide.

Layers, lowest first: the top-level infrastructure (paths, io, errors, settings, timing,
provenance, parallel, collector); models; ingest and analyses (side by side, never importing each other);
book; federated; and the entry points (cli, pipeline, demo), which nothing imports.
"""

import ast
import sys
from pathlib import Path

import pytest

from analysis.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "analysis"
BASE = {"analysis.paths", "analysis.io", "analysis.errors", "analysis.settings", "analysis.timing",
        "analysis.provenance", "analysis.parallel", "analysis.collector"}
ENTRY = {"analysis.cli", "analysis.pipeline", "analysis.demo", "analysis.__main__"}
LAYERS = ("models", "ingest", "analyses", "book", "federated")
# what each layer may import from the project, besides itself
ALLOWED = {
    "base": {"base"},
    "models": set(),
    "ingest": {"base"},
    "analyses": {"base", "models"},
    "book": {"base"},
    "federated": {"base", "models", "ingest", "analyses"},
    "entry": {"base", "models", "ingest", "analyses", "book", "federated", "entry"},
}
MODELS_THIRD_PARTY = {"numpy", "scipy", "pandas", "statsmodels"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module in ENTRY or module == "analysis":
        return "entry"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: put it in a layer folder or name it in tests/test_layers.py")


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            out.add(prefix)
            # `from analysis.x import y` may import the submodule analysis.x.y
            out |= {f"{prefix}.{alias.name}" for alias in node.names
                    if (PACKAGE.parent / f"{prefix}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()}
    return out


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {m: {i for i in imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
LAYER_PACKAGES = {f"analysis.{layer}" for layer in LAYERS}


def violations(module: str, targets) -> list[str]:
    """The imports of ``module`` that its layer may not make."""
    layer = layer_of(module)
    out = []
    for imported in sorted(targets):
        if imported in LAYER_PACKAGES or imported == "analysis":
            continue  # a layer package's __init__: documentation only
        target = layer_of(imported)
        if target != layer and target not in ALLOWED[layer]:
            out.append(f"{module} ({layer}) imports {imported} ({target}); "
                       f"{layer} may import only {sorted(ALLOWED[layer] | {layer})}")
        if target == "entry" and layer != "entry":
            out.append(f"{module} imports the entry point {imported}")
    return out


def find_cycle(graph: dict) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes, or None (depth-first search)."""
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_respect_the_layers(module):
    assert violations(module, GRAPH[module]) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) == "models"))
def test_models_import_only_the_numeric_stack(module):
    """Estimators take domain constants as arguments: no settings, no files, no plotting."""
    for imported in imports(MODULES[module]):
        top = imported.split(".")[0]
        if top == "analysis":
            assert imported.startswith("analysis.models"), (module, imported)
        else:
            assert top in MODELS_THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__", (
                module,
                imported,
            )


def test_no_import_circles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checks_can_fail():
    """Each rule reports a planted violation: a model reading the settings, analyses reading
    a spec, the book fitting a model, a layer importing the command line, and a circle."""
    assert violations("analysis.models.onestage", {"analysis.settings"})
    assert violations("analysis.analyses.overall", {"analysis.ingest.spec"})
    assert violations("analysis.book.figures", {"analysis.models.onestage"})
    assert violations("analysis.ingest.harmonise", {"analysis.cli"})
    assert not violations("analysis.analyses.overall", {"analysis.models.onestage", "analysis.settings"})
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
