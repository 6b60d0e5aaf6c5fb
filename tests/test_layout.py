"""The package's shape (issue 10): small rooms, one folder per face, no import cycle at run
time, and a child that never loads the master's rooms."""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qoper8"
MAX_LINES = 400
MAX_MEDIAN = 200


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def test_no_module_over_400_lines_and_the_median_at_most_200() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
    median = statistics.median(sizes.values())
    assert median <= MAX_MEDIAN, f"median module size {median} > {MAX_MEDIAN}"


def _runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The qoper8 modules ``name`` imports when it is imported: module level only, outside
    ``if TYPE_CHECKING:`` (function-level imports run later, on use)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else base)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def test_no_import_cycle_at_run_time() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _runtime_imports(name, path, known) for name, path in modules.items()}
    # A package's __init__ is imported before its modules: an edge into a package is fine
    # as long as the package itself imports nothing back (checked as any other module).
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle at run time: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


def test_a_child_never_loads_the_masters_rooms() -> None:
    code = (
        "import sys, qoper8._engine.child_main, tests.handlers;"
        "bad = [m for m in sys.modules if m.startswith(("
        "'qoper8._engine.pool', 'qoper8._engine.dispatcher', 'qoper8._engine.jobs', "
        "'qoper8._engine.supervisor', 'qoper8._engine.health', 'qoper8._daemon', "
        "'qoper8._redis', 'qoper8._transport', 'redis', 'rq', 'asyncio', 'aiohttp'))];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
