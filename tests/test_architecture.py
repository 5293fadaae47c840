"""The house plan holds: imports point down the data flow, no cycles, no private names borrowed.

Data flows sources -> readers -> data layer -> tokenizers -> models -> training -> evaluation ->
pipeline -> cli (``shared/DESIGN.md``). Every module of the package gets a layer; a module may
import a module of a lower layer, or of its own subpackage. Imports inside functions count too:
a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurofm"

#: Layers, lowest first. The most specific prefix of a module's dotted name decides its layer.
LAYERS: dict[str, int] = {
    "neurofm": 0,  # the package root: __version__ and the error types
    "neurofm.errors": 0,
    "neurofm.atomic": 0,
    "neurofm.metrics": 1,
    "neurofm.display": 1,  # repr/_repr_html_ helpers shared by every layer
    "neurofm.threads": 1,
    "neurofm.lifetime": 1,
    "neurofm.specs": 1,
    "neurofm.data": 2,
    "neurofm.viz": 3,
    "neurofm.sources": 3,
    "neurofm.readers": 4,
    "neurofm.writers": 4,
    "neurofm.synthetic": 5,
    "neurofm.testing": 6,
    "neurofm.pipeline.ingest": 6,
    "neurofm.pipeline.cluster": 6,
    "neurofm.tokenizers": 7,
    "neurofm.models": 8,
    "neurofm.baselines": 9,
    "neurofm.training": 10,
    "neurofm.analysis": 10,
    "neurofm.evaluation": 11,
    "neurofm.pipeline": 12,
    "neurofm.pretrained": 12,
    "neurofm.cli": 13,
    "neurofm.demo": 13,
}

#: ``neurofm.testing`` serves tests and the demo; the library proper never imports it.
MAY_IMPORT_TESTING = {"neurofm.demo", "neurofm.cli"}  # cli: `neurofm serve`


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every neurofm import in a file."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("neurofm")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("neurofm"):
                out.append((node.lineno, target, [a.name for a in node.names]))
    return out


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(target: str, names: list[str]) -> list[str]:
    """The modules an import really loads (``from pkg import submodule`` loads the submodule)."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    return found or [target]


def test_every_module_has_a_layer():
    for module in MODULES:
        assert any(module == p or module.startswith(p + ".") for p in LAYERS), module


def test_imports_point_down_the_data_flow():
    wrong = []
    for module, path in MODULES.items():
        for line, target, names in _imports(path):
            for dep in _resolve(target, names):
                same = _subpackage(dep) == _subpackage(module)
                if dep.startswith("neurofm.testing") and not same:
                    if module not in MAY_IMPORT_TESTING:
                        wrong.append(f"{path}:{line}: {module} imports {dep} (test-only code)")
                    continue
                if not same and _layer(dep) > _layer(module):
                    wrong.append(
                        f"{path}:{line}: {module} (layer {_layer(module)}) imports {dep} "
                        f"(layer {_layer(dep)})"
                    )
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def test_no_private_name_is_imported_from_another_module():
    private = []
    for module, path in MODULES.items():
        for line, target, names in _imports(path):
            hidden = [n for n in names if n.startswith("_") and not n.endswith("__")]
            hidden += [p for p in target.split(".") if p.startswith("_")]
            if hidden and target != module:
                private.append(f"{path}:{line}: {module} imports {target}: {hidden}")
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_no_import_cycles():
    graph = {
        m: {d for _, t, n in _imports(p) for d in _resolve(t, n) if d in MODULES and d != m}
        for m, p in MODULES.items()
    }
    # A package's __init__ re-exports its modules; an arrow into the package from one of its
    # own modules would be a cycle, an arrow from outside is not.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The checks above can fail: a reader importing a model is caught."""
    module = "neurofm.readers.example"
    assert _layer("neurofm.models.poyo") > _layer(module)
    assert _layer("neurofm.data.recording") < _layer(module)
    assert _resolve("neurofm.data", ["recording"]) == ["neurofm.data.recording"]


def test_make_test_runs_the_slow_tests_too():
    """`@pytest.mark.slow` is for the quick loop (`-m "not slow"`); CI and `make test` run all."""
    import re

    text = (PACKAGE.parent / "pyproject.toml").read_text()
    addopts = re.search(r"^addopts\s*=\s*(.+)$", text, re.M).group(1)
    assert "-m" not in addopts.strip("\"'").split(), addopts
