"""The house rules, read from the source: no module reaches into another's private names, every module imported
from outside says what it exports, tldiag never imports streamlit, the pages hold no thresholds, and no user data
gets one of Streamlit's media URLs."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tldiag"
APP_FILES = sorted([ROOT / "app.py", ROOT / "app_state.py", ROOT / "app_cache.py", *ROOT.glob("pages/*.py")])
PACKAGE_FILES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from module import name`` in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out += [(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names]
    return out


def is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_the_import_walk_sees_the_package():
    found = {m for f in PACKAGE_FILES for m, _, _ in imports(f)}
    assert "tldiag.training.loop" in found and "tldiag.validation" in found  # relative imports are resolved


def test_no_module_imports_another_modules_private_names():
    offences = []
    for path in PACKAGE_FILES + APP_FILES:
        for module, name, line in imports(path):
            if not name.startswith("_") or name.endswith("__") or \
                    module.split(".")[0] not in ("tldiag", "app_state", "app_cache"):
                continue
            if is_module(f"{module}.{name}"):
                continue  # a package-private module (_config, _proc) is importable by design
            offences.append(f"{path.relative_to(ROOT)}:{line} imports {name} from {module}")
    assert not offences, "\n".join(offences)


def test_modules_imported_from_outside_declare_all():
    imported: dict[str, set[str]] = {}
    for path in PACKAGE_FILES + APP_FILES + sorted(ROOT.glob("tests/**/*.py")):
        me = module_name(path)
        for module, name, _ in imports(path):
            target = f"{module}.{name}" if name and is_module(f"{module}.{name}") else module
            if target.startswith("tldiag") and target != me and is_module(target):
                imported.setdefault(target, set()).add(me)
    missing = []
    for module in sorted(imported):
        path = ROOT.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if path.name == "__init__.py" and module.count(".") >= 1 and not path.read_text(encoding="utf-8").count("import"):
            continue  # a namespace-like package (tldiag.training, tldiag.decision): nothing to export
        if Path(path).name.startswith("_") and path.name != "__init__.py":
            continue  # package-private modules
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
                   for n in tree.body):
            missing.append(module)
    assert not missing, f"imported from outside but without __all__: {missing}"


def test_tldiag_never_imports_streamlit():
    offences = [f"{p.relative_to(ROOT)}:{line}" for p in PACKAGE_FILES for module, _, line in imports(p)
                if module.split(".")[0] == "streamlit"]
    assert not offences


MEDIA_URL_CALLS = {"image", "audio", "video", "download_button", "pdf"}


def test_user_data_never_gets_a_media_url():
    """Streamlit serves ``/media/...`` to anyone with the link, signed in or not: images go through
    ``app_state.show_images`` (inline data URIs) and downloads through ``app_state.download_button`` (made on the
    click, over the session's connection). Only app_state itself calls Streamlit's own."""
    offences = []
    for path in APP_FILES:
        if path.name == "app_state.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in MEDIA_URL_CALLS and ast.unparse(node.func.value) != "app_state":
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node.func)}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("page", sorted(ROOT.glob("pages/*.py")), ids=lambda p: p.name)
def test_pages_hold_no_thresholds(page):
    """A comparison with a fractional literal on a page is a rule the rules file does not know (they live in
    tldiag/decision/verdict_rules.toml, [pages] for the pages' notes)."""
    offences = []
    for node in ast.walk(ast.parse(page.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and isinstance(side.value, float):
                    offences.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


@functools.lru_cache(maxsize=None)  # every import of a module reads the same file
def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return names


def test_every_import_from_the_package_resolves():
    """A moved module leaves no import behind (also the lazy ones inside functions, which only fail when run)."""
    broken = []
    for path in PACKAGE_FILES + APP_FILES + sorted(ROOT.glob("tests/**/*.py")):
        for module, name, line in imports(path):
            if not module.startswith("tldiag") or not name or name == "*" or is_module(f"{module}.{name}"):
                continue
            target = ROOT.joinpath(*module.split("."))
            target = target / "__init__.py" if target.is_dir() else target.with_suffix(".py")
            if not target.exists() or name not in _top_level_names(target):
                broken.append(f"{path.relative_to(ROOT)}:{line} from {module} import {name}")
    assert not broken, "\n".join(broken)
