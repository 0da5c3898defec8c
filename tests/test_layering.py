"""The package's imports point one way: a walk of every kgooglenet module's imports (ast, nothing is imported) fails on
an import cycle and on an import against the layering below (a module may import its own layer or lower ones).

This table is the one statement of the layering; ARCHITECTURE.md shows it as a picture.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "kgooglenet")

# Lowest first. A module belongs to the first row whose prefix matches its dotted name.
LAYERS = (
    ("kgooglenet.specs",),
    ("kgooglenet.layers",),
    ("kgooglenet.architecture",),  # the network from specs and layers; converters build it here
    ("kgooglenet.weights",),  # named sets, download, readers, converters: below the model that asks for them
    ("kgooglenet.model", "kgooglenet.summary"),
    ("kgooglenet.saving",),
    ("kgooglenet.data",),
    ("kgooglenet.train",),
    ("kgooglenet.tune", "kgooglenet.evaluate", "kgooglenet.export", "kgooglenet.quantize"),
    ("kgooglenet.predict",),
    ("kgooglenet.__main__", "kgooglenet.weights.cli", "kgooglenet"),
)


def layer_of(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no row of LAYERS: add it"
    return best[0]


def modules() -> dict:
    found = {}
    for folder, _, files in os.walk(ROOT):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def imports_of(name: str, path: str, known: set) -> set:
    """kgooglenet modules `name` imports anywhere in its file (lazy imports inside functions count too)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "kgooglenet" or t.startswith("kgooglenet."):
                out.add(t)
                # importing a.b.c runs the __init__ of a.b first (the root package's is exempt: everything passes it)
                parts = t.split(".")
                out.update(".".join(parts[:i]) for i in range(2, len(parts)))
    out.discard(name)
    return out


def graph():
    found = modules()
    known = set(found)
    return {name: {t for t in imports_of(name, path, known) if t in known} for name, path in found.items()}


def test_every_import_points_down_the_layers():
    wrong = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in sorted(graph().items()) for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own submodules is not a cycle of logic; any other loop is.
    real = [c for c in cycles if not all(part.startswith(c.split(" -> ")[0]) for part in c.split(" -> "))]
    assert not real, "import cycles:\n" + "\n".join(real)


@pytest.mark.parametrize("module,expected", [("kgooglenet.specs", 0), ("kgooglenet.weights.caffe", 3),
                                             ("kgooglenet.weights.cli", 10), ("kgooglenet.train.loop", 7),
                                             ("kgooglenet", 10)])
def test_layer_table_places_modules(module, expected):
    assert layer_of(module) == expected
