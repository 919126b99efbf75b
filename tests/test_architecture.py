"""The package's layering rules, checked on the source (AST), not by convention.

* No import cycles between the modules of ``psnmf``, counting imports inside functions too
  (a lazy import that only dodges a cycle is still a cycle in the design).
* No module uses another module's private names: no ``from psnmf.x import _name``, no
  ``module._name`` on an imported psnmf module, and no ``obj._name`` on an object unless the
  name is defined in the same module (its own class's attributes and methods). Importing a
  private *module* (``psnmf.engine._kernels``) from inside the package is allowed.
* The engine never imports the estimator, the pipeline, the report or the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "psnmf"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """Absolute name of the module of ``from <level dots><module> import ...``."""
    if level == 0:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(name: str, path: Path) -> set[str]:
    """psnmf modules imported by module ``name`` (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "psnmf")
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
            if mod.split(".")[0] != "psnmf":
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if sub in MODULES else mod)
    out.discard(name)
    return {m for m in out if m in MODULES}


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


#: Documented standard-library names that start with an underscore: ``os._exit`` ends a
#: forked child without running the parent's exit handlers (psnmf.report.background).
STDLIB_UNDERSCORED = {("os", "_exit")}


def _is_private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines itself: functions, classes, assigned names and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _private_uses(name: str, path: Path) -> list[str]:
    """Uses of other modules' (or other objects') private names in module ``name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined_names(tree)
    module_aliases: dict[str, str] = {}
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                if full in MODULES:
                    module_aliases[alias.asname or alias.name] = full
                elif _is_private(alias.name):
                    bad.append(f"line {node.lineno}: from {mod} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Name) and (value.id, node.attr) in STDLIB_UNDERSCORED:
            continue
        if isinstance(value, ast.Name) and value.id in module_aliases:
            bad.append(f"line {node.lineno}: {value.id}.{node.attr}")
        elif node.attr not in own:
            bad.append(f"line {node.lineno}: .{node.attr} (not defined in this module)")
    return bad


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles between psnmf modules: " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_of_other_modules(name):
    bad = _private_uses(name, MODULES[name])
    assert not bad, f"{name} uses private names it does not define: " + "; ".join(bad)


def test_engine_stays_below_the_estimator():
    upper = ("psnmf.estimator", "psnmf.pipeline", "psnmf.report", "psnmf.cli")
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith("psnmf.engine"):
            wrong = sorted(d for d in deps if d.startswith(upper))
            assert not wrong, f"{name} imports {wrong}"


def test_rules_catch_a_cycle_and_a_private_call(tmp_path):
    """The checks themselves find what they are meant to find."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    src = tmp_path / "m.py"
    src.write_text(
        "from psnmf.estimator import _hidden\n"
        "def f(model):\n"
        "    return model._fit_binned(1)\n"
        "class C:\n"
        "    def g(self, other):\n"
        "        self._own = 1\n"
        "        return other._own\n",
        encoding="utf-8",
    )
    bad = _private_uses("psnmf.m", src)
    assert any("_hidden" in b for b in bad)
    assert any("_fit_binned" in b for b in bad)
    assert not any("_own" in b for b in bad)
