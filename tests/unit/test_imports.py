"""What the programs load, and who may import whom.

The layers: `unhindered` is the shared core and imports neither program; the probe
(`probes`) and the collector (`collector`) never import each other; and no product module
imports another in a cycle.

The graph is read from the source with `ast`, every import statement: at module level,
inside functions (run later, but still a dependency) and under `if TYPE_CHECKING:`.
A TYPE_CHECKING import is never executed, so it is left out of the cycle check (it cannot
leave a module half-initialised, and it is how annotations name a type without a cycle);
it still counts for the layer check, since naming the other program's types is coupling all
the same. `from pkg import name` is an edge to the module pkg.name when that is a module,
else to pkg. A parent package that Python initialises on the way (`import a.b.c` runs
a/__init__.py) is not an edge: such "cycles" through a package's __init__ are harmless.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("unhindered", "probes", "collector")
# Who may not import whom (importer's package -> forbidden packages).
FORBIDDEN = {
    "unhindered": ("probes", "collector"),
    "probes": ("collector",),
    "collector": ("probes",),
}
# Third-party packages the shared core may import when its module is imported: the base
# dependencies of pyproject.toml (pydantic brings pydantic_core; dnspython is `dns`).
CORE_BASE_DEPS = {"pydantic", "pydantic_core", "yaml", "dns"}
# ... and inside functions, run only by the program whose extra brings the package.
CORE_DEFERRED = {
    "babel",  # unhindered.i18n, the collector's text (collector extra)
    "pysnmp",  # unhindered.snmp.mibs, the SNMP agent and receiver (both extras)
    "cryptography",  # unhindered.probing.tls, reading a certificate (both extras)
    "pysmi",  # unhindered.snmp.mibcompile, at build time (build requirement) and in tests
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a product module, or the dotted name as written for anything else
    path: Path
    line: int
    type_checking: bool  # under `if TYPE_CHECKING:`: never executed
    deferred: bool  # inside a function: executed when it is called

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def product_modules(root: Path, packages: tuple[str, ...] = PRODUCT) -> dict[str, Path]:
    """Every .py file of the packages, by dotted module name (a package by its own name)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if not all(p.isidentifier() for p in parts[:-1]) or "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            elif not parts[-1].isidentifier():
                # e.g. unhindered/snmp/mibs/UNHINDERED-MIB.py: generated at build time,
                # loaded by pysnmp from its directory, never imported by name.
                continue
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The most specific product module `name` is or lies in, else `name` itself."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return name


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, root: Path, modules: dict[str, Path]):
        self.module, self.path, self.root, self.modules = module, path, root, modules
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._type_checking = 0
        self._functions = 0

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.module, target, self.path.relative_to(self.root),
                                 node.lineno, self._type_checking > 0, self._functions > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(_resolve(alias.name, self.modules), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        if origin == "__future__":
            return
        targets = []
        for alias in node.names:
            submodule = f"{origin}.{alias.name}"
            target = submodule if submodule in self.modules else _resolve(origin, self.modules)
            if target not in targets:
                targets.append(target)
        for target in targets:
            self._add(target, node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _visit_function(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function


def all_imports(root: Path, packages: tuple[str, ...] = PRODUCT) -> list[Import]:
    modules = product_modules(root, packages)
    found = []
    for module, path in modules.items():
        visitor = _ImportVisitor(module, path, root, modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found += visitor.found
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def layer_violations(imports: list[Import]) -> list[str]:
    """One line per import that crosses a forbidden layer boundary."""
    problems = []
    for imp in imports:
        if _top(imp.target) in FORBIDDEN.get(_top(imp.source), ()):
            how = " (under TYPE_CHECKING)" if imp.type_checking else ""
            problems.append(f"{imp.source} imports {imp.target} at {imp.where()}{how}")
    return problems


def import_cycles(imports: list[Import], modules: set[str]) -> list[str]:
    """One entry per strongly connected component of more than one module in the graph of
    executed imports (TYPE_CHECKING ones left out), showing one cycle through it as a
    chain `a -> b (path:line) -> ... -> a`."""
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for imp in imports:
        if not imp.type_checking and imp.target in modules and imp.target != imp.source:
            edges[imp.source].setdefault(imp.target, imp)

    # Tarjan's algorithm, iterative (the graph has hundreds of modules).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    problems = []
    for component in components:
        members = set(component)
        first = component[0]
        # The shortest way back to `first` inside the component (breadth first).
        previous: dict[str, str] = {}
        queue = deque([first])
        while True:
            node = queue.popleft()
            if first in edges[node]:
                break
            for child in sorted(edges[node]):
                if child in members and child != first and child not in previous:
                    previous[child] = node
                    queue.append(child)
        chain = [node]
        while chain[-1] != first:
            chain.append(previous[chain[-1]])
        chain.reverse()
        chain.append(first)
        steps = [chain[0]] + [f"{b} ({edges[a][b].where()})"
                              for a, b in pairwise(chain)]
        problems.append(f"cycle among {', '.join(component)}: " + " -> ".join(steps))
    return problems


def test_layers():
    problems = layer_violations(all_imports(ROOT))
    assert not problems, "imports across layers:\n" + "\n".join(problems)


def test_no_import_cycles():
    problems = import_cycles(all_imports(ROOT), set(product_modules(ROOT)))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_core_imports_only_base_dependencies():
    """`pip install .` alone (no extra) must import any module of the shared core; the
    packages of an extra only inside the functions that program calls."""
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for imp in all_imports(ROOT, ("unhindered",)):
        top = _top(imp.target)
        if top in stdlib or top in PRODUCT or imp.type_checking:
            continue
        allowed = CORE_BASE_DEPS | (CORE_DEFERRED if imp.deferred else set())
        if top not in allowed:
            when = "in a function" if imp.deferred else "at import"
            problems.append(f"{imp.source} imports {imp.target} {when}, at {imp.where()}")
    assert not problems, ("the shared core imports what the base dependencies do not bring "
                          "(pyproject.toml):\n" + "\n".join(problems))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_bad_imports(tmp_path):
    """The checker itself, on a small made-up tree with every kind of mistake."""
    _write(tmp_path, {
        "unhindered/__init__.py": "",
        "unhindered/core.py": "def f():\n    from probes import run\n",
        "unhindered/typed.py": ("from typing import TYPE_CHECKING\n"
                                "if TYPE_CHECKING:\n    import collector.db\n"),
        "unhindered/ok.py": "import json\nfrom unhindered import core\n",
        "probes/__init__.py": "",
        "probes/run.py": "from . import loop\n",
        "probes/loop.py": "from .sub.deep import x\n",
        "probes/sub/__init__.py": "",
        "probes/sub/deep.py": "import probes.run\n",  # run -> loop -> sub.deep -> run
        "collector/__init__.py": "",
        "collector/db.py": ("import typing\nif typing.TYPE_CHECKING:\n"
                            "    from collector.api import App\n"),
        "collector/api.py": "from collector.db import Store\nfrom ..probes import run\n",
    })
    imports = all_imports(tmp_path)
    modules = set(product_modules(tmp_path))
    assert "collector.db" in modules and "probes" in modules

    layers = layer_violations(imports)
    assert any(p.startswith("unhindered.core imports probes.run at unhindered/core.py:2")
               for p in layers), layers
    assert any(p.startswith("unhindered.typed imports collector.db") and "TYPE_CHECKING" in p
               for p in layers), layers
    assert any(p.startswith("collector.api imports probes.run at collector/api.py:2")
               for p in layers), layers
    assert len(layers) == 3, layers

    cycles = import_cycles(imports, modules)
    # collector.db <-> collector.api is closed only by a TYPE_CHECKING import: no cycle.
    assert cycles == [
        "cycle among probes.loop, probes.run, probes.sub.deep: probes.loop -> "
        "probes.sub.deep (probes/loop.py:1) -> probes.run (probes/sub/deep.py:1) -> "
        "probes.loop (probes/run.py:1)"
    ], cycles


def test_checker_reads_the_real_tree():
    """Guards the checker against silently finding nothing in the real tree."""
    imports = all_imports(ROOT)
    edges = {(i.source, i.target) for i in imports}
    assert ("probes.cli", "probes.config") in edges
    assert ("collector.cli", "collector.store.database") in edges
    assert ("unhindered.checks", "unhindered.checks.dns") in edges


def test_probe_start_imports_nothing_heavy_it_does_not_use():
    code = ("import json, sys; import probes.app, probes.cli; "
            "print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True).stdout)
    # aiohttp (13 MiB) is the collector's; cryptography (8 MiB) only when a TLS check runs.
    heavy = ("scapy", "sqlalchemy", "collector", "aiohttp", "cryptography")
    assert not [m for m in modules if m.split(".")[0] in heavy]


def test_check_settings_load_no_check_runtime():
    """Validating a config (unhindered.checks and every kind's settings) loads none of the
    probe's check code (unhindered.probing.*) nor the programs' heavy libraries."""
    code = ("import json, pkgutil, sys, importlib, unhindered.checks as c; "
            "[importlib.import_module(m.name) for m in pkgutil.iter_modules(c.__path__, "
            "'unhindered.checks.')]; print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True, cwd=ROOT).stdout)
    assert "unhindered.checks.dns" in modules
    forbidden = ("probes", "collector", "pysnmp", "aiohttp", "sqlalchemy")
    loaded = [m for m in modules if m.split(".")[0] in forbidden
              or m.startswith("unhindered.probing")]
    assert not loaded, f"importing unhindered.checks loaded {loaded}"
