"""The layer order of the package: every module sits in one layer, and no module imports one of a higher layer, at
module level or lazily inside a function; nor is there any import cycle, inside a layer included.

A new module goes into the lowest layer whose modules it needs; if it needs an upper one, it belongs there. The
``tldiag`` package itself is the public facade (lazy names for users) and no module may import it. Registries that
name an upper module as a string are the seams where higher layers plug in: job kinds
(``tldiag.training.jobs.KINDS``) and models built on first use (the ``tldiag.model_builders`` entry points, checked
below to sit above the registry).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tldiag"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("_version", "errors", "_proc", "progress", "stats", "shifts", "_config")),
    ("stores", ("audit", "access", "cache_limit", "cache", "training.jobs")),
    ("inputs", ("data", "validation", "models", "setup", "splits", "pixels")),
    ("metrics", ("metrics.logistic", "metrics.neighbours", "metrics.mmd", "metrics.divergence", "metrics.domain",
                 "metrics.scale", "metrics.layers", "metrics")),
    ("forward pass", ("forward", "distributed")),
    ("features", ("embed", "projection", "sourcehead", "transferability", "probes")),
    ("training", ("training", "training.augment", "training.smallcnn", "training.loop", "demo", "training.finetune")),
    ("data efficiency", ("training.efficiency.config", "training.efficiency.runs", "training.efficiency.plan",
                         "training.efficiency.intervals", "training.efficiency.arms", "training.efficiency.readouts",
                         "training.efficiency.runner", "training.efficiency.job", "training.efficiency",
                         "training.configs", "leaderboard")),
    ("decision", ("viz", "decision", "decision.rules", "decision.evidence", "decision.signals", "decision.recipe",
                  "decision.verdict", "decision.report", "decision.panel")),
    ("entry points", ("cli", "bench", "_bench_scale")),
)
"""Lowest first; names relative to ``tldiag``."""


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Module name (relative to the package: ``training.loop``; a sub-package by its own name) -> file."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, source: str, modules: set[str]) -> set[str]:
    """The package modules that ``source`` (module ``name``) imports, anywhere in it; ``""`` is the facade."""
    is_package = name in {m.rpartition(".")[0] for m in modules if "." in m} or name == ""
    here = name.split(".") if name else []
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "tldiag" or node.module.startswith("tldiag.")):
                target = node.module[len("tldiag."):] if node.module != "tldiag" else ""
            else:
                continue
            targets = [f"{target}.{a.name}".lstrip(".") for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            targets = [a.name[len("tldiag."):] if a.name != "tldiag" else "" for a in node.names
                       if a.name == "tldiag" or a.name.startswith("tldiag.")]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t in modules or t == "":
                found.add(t)
                break
    found.discard(name)
    return found


def layer_of() -> dict[str, int]:
    return {m: i for i, (_, members) in enumerate(LAYERS) for m in members}


def upward_imports(sources: dict[str, str]) -> list[str]:
    """Every import that goes up the layer order or into the facade, as ``'a (layer) imports b (layer)'``."""
    layers, names = layer_of(), set(sources)
    out = []
    for name, source in sorted(sources.items()):
        for target in sorted(imports_of(name, source, names)):
            if target == "":
                out.append(f"{name} imports the tldiag facade; import the module that defines the name instead")
            elif layers[target] > layers[name]:
                out.append(f"{name} ({LAYERS[layers[name]][0]}) imports {target} ({LAYERS[layers[target]][0]})")
    return out


def cycles(sources: dict[str, str]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module)."""
    names = set(sources)
    edges = {n: imports_of(n, s, names) - {""} for n, s in sources.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for n in sorted(edges):
        if n not in index:
            visit(n)
    return out


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {name: path.read_text() for name, path in module_files().items() if name}


def test_every_module_has_a_layer(sources):
    listed = layer_of()
    assert not sorted(set(sources) - set(listed)), "add these modules to a layer of LAYERS"
    assert not sorted(set(listed) - set(sources)), "these LAYERS entries name no module"


def test_no_module_imports_up_the_layer_order(sources):
    assert upward_imports(sources) == []


def test_no_import_cycle(sources):
    assert cycles(sources) == []


def test_an_upward_import_is_caught_lazy_ones_included(sources):
    """The check itself: the model registry importing a trainer inside a function, or the facade, fails it."""
    planted = dict(sources)
    planted["models"] = sources["models"] + "\n\ndef _planted():\n    from .training.loop import fit\n    return fit\n"
    assert upward_imports(planted) == ["models (inputs) imports training.loop (training)"]
    planted["models"] = sources["models"] + "\n\ndef _planted():\n    from . import load_model\n"
    assert upward_imports(planted) == ["models imports the tldiag facade; import the module that defines the "
                                       "name instead"]
    planted = dict(sources)
    planted["data"] = sources["data"] + "\n\ndef _planted():\n    import tldiag.embed\n"
    assert upward_imports(planted) == ["data (inputs) imports embed (features)"]
    assert cycles({"a": "from . import b", "b": "from .a import x"}) == [["a", "b"]]


def test_plugins_registered_by_name_sit_above_their_registry():
    """The job kinds and the models built on first use name their modules as strings: those must sit above the
    registry that loads them (else the string import is an upward import in disguise)."""
    import tomllib

    from tldiag.training.jobs import KINDS

    layers = layer_of()
    for module in KINDS.values():
        assert layers[module[len("tldiag."):]] >= layers["training.jobs"], module
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    builders = project["entry-points"]["tldiag.model_builders"]
    assert builders, "the demo's source model is declared as a builder"
    for target in builders.values():
        module = target.partition(":")[0][len("tldiag."):]
        assert layers[module] > layers["models"], target
