"""The package's shape, checked by machine: layers, no import cycles, a pure core.

Why this file exists: issue 10 split ``jcm_sync`` into ``core`` (pure rules), ``local``
(node-local files), ``store``, ``services``, ``net`` and ``cli``, each layer importing
only those below it. A split that nothing checks decays one convenient import at a
time. ``lint-imports`` (contracts in pyproject.toml, run by ``make lint``) checks the
layers; this file checks what its contracts cannot say and that they really bite:

1. No import cycles anywhere in the package, counting imports inside functions and
   under ``TYPE_CHECKING`` (grimp reads every import statement).
2. The pure core imports nothing but ``jcm_sync.errors``, itself, msgspec,
   cryptography, PyNaCl and the standard library less the modules the pure-core contract
   forbids (an allow-list, where the contract can only list what is forbidden).
3. ``lint-imports`` fails, naming the broken contract, on a copy of the package with
   a forbidden import added, and passes on the same copy unmodified. A contract that
   never fails protects nothing.
4. The core, the node-local files and the hub's auth, guard and ops modules hold no
   module-level mutable state: no ``global``, no module-level container written by a
   function, no metric object created at import. State lives on the object that owns
   it, so two hubs in one process (as in the tests) never share it.
"""

from __future__ import annotations

import ast
import itertools
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grimp
import pytest

import jcm_sync

PACKAGE = "jcm_sync"
PACKAGE_DIR = Path(jcm_sync.__file__).parent
PROJECT_DIR = PACKAGE_DIR.parent
PYPROJECT = PROJECT_DIR / "pyproject.toml"

#: Imports that close a cycle today, each removed from the graph before the search,
#: with the reason it is tolerated. An entry that no longer matches an import fails
#: the test, so the list can only shrink.
KNOWN_CYCLE_IMPORTS: Mapping[tuple[str, str], str] = {}

#: What the pure core may import besides the standard library and itself.
#: PyNaCl (``nacl``) computes the one Ed25519 rule in ``core/ed25519.py`` (ADR 0038).
CORE_ALLOWED = frozenset({"jcm_sync.errors", "msgspec", "cryptography", "nacl"})

#: Module-level state allowed, by file and name, each with why it is not shared state.
#: An entry that no longer matches fails the test, so the list can only shrink.
ALLOWED_MODULE_STATE: Mapping[tuple[str, str], str] = {
    ("jcm_sync/net/server.py", "REQUEST_ID"): (
        "a ContextVar: each request's task sees its own value; nothing is shared between "
        "requests (ADR 0019)"
    ),
}


def _contracts() -> dict[str, dict[str, Any]]:
    """The import-linter contracts of pyproject.toml, by id."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _module_file(module: str, root: Path = PACKAGE_DIR) -> str:
    """The source file of ``module``, relative to the project, for messages."""
    parts = module.split(".")[1:]
    path = root.joinpath(*parts)
    found = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return str(found.relative_to(root.parent))


def _import_site(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    """``file:line: statement`` of each import of ``imported`` by ``importer``."""
    details = graph.get_import_details(importer=importer, imported=imported)
    where = _module_file(importer)
    if not details:
        return f"{where}: imports {imported}"
    return "; ".join(f"{where}:{d['line_number']}: {d['line_contents']}" for d in details)


# --- 1. no import cycles ------------------------------------------------------------


def find_cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """One concrete cycle (a module list, first repeated last) per strongly connected
    component of ``modules`` (Tarjan's algorithm, iterative: no recursion limit)."""
    nodes = sorted(modules)
    inside = set(nodes)

    def successors(m: str) -> list[str]:
        return sorted(set(graph.find_modules_directly_imported_by(m)) & inside)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(successors(start)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors(child))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors(node):
                    components.append(sorted(component))
    return [_cycle_through(graph, c) for c in components]


def _cycle_through(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside it."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(set(graph.find_modules_directly_imported_by(node)) & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # Tarjan says there is


def _describe_cycle(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    steps = [f"  {_import_site(graph, a, b)}" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_package_has_no_import_cycles() -> None:
    """No module of jcm_sync reaches itself through imports, function-level ones included."""
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=False)
    stale = [
        f"{a} -> {b}"
        for a, b in KNOWN_CYCLE_IMPORTS
        if not graph.direct_import_exists(importer=a, imported=b)
    ]
    assert not stale, f"remove from KNOWN_CYCLE_IMPORTS, the import is gone: {stale}"
    for importer, imported in KNOWN_CYCLE_IMPORTS:
        graph.remove_import(importer=importer, imported=imported)
    cycles = find_cycles(graph, graph.modules)
    assert not cycles, "import cycles:\n" + "\n".join(_describe_cycle(graph, c) for c in cycles)


def test_cycle_search_finds_a_cycle_through_a_function_level_import() -> None:
    """The cycle search reports each cycle once, with its modules in import order."""
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.e", "p.e")]:
        graph.add_import(importer=a, imported=b, line_number=1, line_contents=f"import {b}")
    graph.add_module("p.lone")
    assert find_cycles(graph, graph.modules) == [["p.a", "p.b", "p.c", "p.a"], ["p.e", "p.e"]]

    acyclic = grimp.ImportGraph()
    acyclic.add_import(importer="p.a", imported="p.b", line_number=1, line_contents="import p.b")
    assert find_cycles(acyclic, acyclic.modules) == []


# --- 2. what the pure core imports -------------------------------------------------


def test_the_core_imports_only_errors_itself_msgspec_cryptography_and_pure_stdlib() -> None:
    """Every import of jcm_sync.core is on its allow-list (stdlib less the contract's list)."""
    forbidden = set(_contracts()["pure-core"]["forbidden_modules"])
    graph = grimp.build_graph(
        PACKAGE, include_external_packages=True, exclude_type_checking_imports=False
    )
    core = graph.find_descendants(f"{PACKAGE}.core") | {f"{PACKAGE}.core"}

    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        if name == f"{PACKAGE}.core" or name.startswith(f"{PACKAGE}.core."):
            return True
        if name in CORE_ALLOWED or top in CORE_ALLOWED:
            return True
        return top in sys.stdlib_module_names and top not in forbidden

    refused = [
        _import_site(graph, m, t)
        for m in sorted(core)
        for t in sorted(graph.find_modules_directly_imported_by(m))
        if not allowed(t)
    ]
    assert not refused, "the pure core imports outside its allow-list:\n" + "\n".join(refused)


# --- 3. lint-imports bites -----------------------------------------------------------


def _copy_project(dest: Path) -> Path:
    """The package and pyproject.toml, copied under ``dest``."""
    shutil.copytree(
        PACKAGE_DIR, dest / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    shutil.copy2(PYPROJECT, dest / "pyproject.toml")
    return dest


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``lint-imports`` on ``project``'s copy of the package."""
    script = Path(sysconfig.get_path("scripts")) / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(script), "--no-cache", "--no-logo", str(project / "pyproject.toml")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _append(path: Path, source: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write("\n\n" + textwrap.dedent(source))


@pytest.fixture(scope="module")
def copied_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_project(tmp_path_factory.mktemp("architecture"))


def test_lint_imports_passes_on_the_package(copied_project: Path) -> None:
    """The contracts hold for the package as it is (what ``make lint`` checks)."""
    result = _lint_imports(copied_project)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in _contracts().values():
        assert f"{contract['name']} KEPT" in result.stdout, result.stdout


def test_lint_imports_refuses_a_forbidden_import(tmp_path: Path) -> None:
    """Core reaching up to local or out to a socket, or a service up to net, breaks a contract."""
    project = _copy_project(tmp_path)
    service = sorted(
        p for p in (project / PACKAGE / "services").glob("*.py") if p.name != "__init__.py"
    )[0]
    service_module = f"{PACKAGE}.services.{service.stem}"
    # inside a function: such imports count as much as module-level ones
    _append(
        project / PACKAGE / "core" / "trust.py",
        """
        def _reaches_out() -> None:
            import socket  # noqa: F401

            import jcm_sync.local.keyfiles  # noqa: F401
        """,
    )
    _append(service, "import jcm_sync.net.server  # noqa: F401, E402\n")

    result = _lint_imports(project)

    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    contracts = _contracts()
    assert f"{contracts['layers']['name']} BROKEN" in out, out
    assert f"{contracts['pure-core']['name']} BROKEN" in out, out
    assert "jcm_sync.core.trust -> jcm_sync.local.keyfiles" in out, out
    assert "jcm_sync.core.trust -> socket" in out, out
    assert f"{service_module} -> jcm_sync.net.server" in out, out


# --- 4. no module-level mutable state -----------------------------------------------

#: Methods that change a container or a metric in place.
MUTATORS = frozenset(
    {
        "add", "append", "appendleft", "clear", "dec", "discard", "extend", "inc",
        "insert", "labels", "observe", "pop", "popitem", "remove", "set", "setdefault",
        "update",
    }
)  # fmt: skip
#: Constructors whose module-level instances are shared state by nature.
STATEFUL_TYPES = frozenset(
    {
        "Counter", "Gauge", "Histogram", "Summary", "Info", "Enum", "ContextVar",
        "WeakKeyDictionary", "WeakValueDictionary", "WeakSet", "defaultdict", "deque",
        "OrderedDict",
    }
)  # fmt: skip


def module_state(source: str, filename: str = "<module>") -> list[str]:
    """Module-level mutable state in ``source``: ``global`` statements, module-level
    names that a function mutates in place, and stateful objects built at import."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    names: set[str] = set()
    for stmt in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            names.add(target.id)
            if isinstance(value, ast.Call):
                callee = value.func
                called = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
                if called in STATEFUL_TYPES:
                    found.append(f"{filename}:{stmt.lineno}: {target.id} = {called}(...)")
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        local = {a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)}
        local |= {
            n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        for inner in ast.walk(func):
            base: ast.expr | None = None
            if isinstance(inner, ast.Global):
                found.append(f"{filename}:{inner.lineno}: global {', '.join(inner.names)}")
            elif isinstance(inner, ast.Subscript) and isinstance(inner.ctx, ast.Store | ast.Del):
                base = inner.value
            elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
                base = inner.func.value if inner.func.attr in MUTATORS else None
            if isinstance(base, ast.Name) and base.id in names and base.id not in local:
                found.append(
                    f"{filename}:{base.lineno}: {func.name} changes module-level {base.id}"
                )
    return list(dict.fromkeys(found))  # a nested function is walked with its parent too


def test_no_module_level_mutable_state_anywhere_in_the_package() -> None:
    """Every module keeps its state on objects; the allowed few say why (rule 4)."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = str(path.relative_to(PROJECT_DIR))
        for line in module_state(path.read_text(encoding="utf-8"), rel):
            name = line.split(": ", 1)[1].split(" ")[0] if " = " in line else line.rsplit(" ", 1)[1]
            found.setdefault((rel, name), []).append(line)
    stale = [key for key in ALLOWED_MODULE_STATE if key not in found]
    assert not stale, f"allowed module state no longer present: {stale}"
    shared = [
        line for key, lines in found.items() if key not in ALLOWED_MODULE_STATE for line in lines
    ]
    assert not shared, "module-level mutable state:\n" + "\n".join(shared)


STATE_CASES = {
    "cache-written-by-a-function": (
        "_CACHE: dict[int, int] = {}\ndef f(k):\n    _CACHE[k] = 1\n",
        1,
    ),
    "list-appended-by-a-method": (
        "SEEN = []\nclass A:\n    def f(self, x):\n        SEEN.append(x)\n",
        1,
    ),
    "global-statement": ("N = 0\ndef f():\n    global N\n    N = 1\n", 1),
    "metric-at-import": ("from prometheus_client import Counter\nC = Counter('c', 'c')\n", 1),
    "read-only-table": ("KINDS = {'a': 1}\ndef f(k):\n    return KINDS[k]\n", 0),
    "local-shadow": ("ITEMS = []\ndef f():\n    ITEMS = []\n    ITEMS.append(1)\n", 0),
}


@pytest.mark.parametrize(("source", "count"), STATE_CASES.values(), ids=STATE_CASES.keys())
def test_module_state_scan_flags_shared_state_and_spares_constants(source: str, count: int) -> None:
    """The scan finds a mutated module-level container, ``global`` and import-time metrics."""
    assert len(module_state(source)) == count, module_state(source)


def _own_test_file(module: Path) -> Path:
    """Where a module's own tests live: ``tests/<package path>/test_<module>.py``."""
    rel = module.relative_to(PACKAGE_DIR)
    return PROJECT_DIR / "tests" / rel.parent / f"test_{rel.stem}.py"


def test_every_module_has_a_test_file_of_its_own_that_tests_something() -> None:
    """The tests mirror the package (ADR 0020): each module, its own file, with tests."""
    missing = []
    for module in sorted(PACKAGE_DIR.rglob("*.py")):
        if module.name in ("__init__.py", "__main__.py"):
            continue
        own = _own_test_file(module)
        tests = (
            [
                node
                for node in ast.walk(ast.parse(own.read_text(encoding="utf-8")))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name.startswith("test_")
            ]
            if own.is_file()
            else []
        )
        if not tests:
            missing.append(f"{module.relative_to(PROJECT_DIR)} -> {own.relative_to(PROJECT_DIR)}")
    assert not missing, "modules without tests of their own:\n" + "\n".join(missing)
