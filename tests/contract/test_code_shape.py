"""The tree keeps the shape the style guide asks for, checked on every module as written.

* No module is over 400 lines: past that a module usually holds two ideas.
* Nothing outside ``brokers/`` names a broker backend: no import of ``brokers.memory``,
  ``brokers.rabbitmq`` or ``brokers.redis``, no comparison with their names (with "redis" when
  the comparison is about a broker: Redis is a job store too). What a caller needs to know of a
  backend is a property of the broker contract. (Tests may: they run every backend.)
* No test imports another test module or a conftest: what tests share lives in ``tests/support``.
* The core (``mlgate/``) imports none of the packages built on it: ``server``, ``workers``,
  ``brokers``, ``storage``. The few imports of the latter two that predate the rule are listed,
  so that none is added.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
BACKENDS = {"memory", "rabbitmq", "redis"}
# Redis is a job store too: a comparison with "redis" names the broker when it is about one.
_ONLY_BROKERS = BACKENDS - {"redis"}
# Built on the core: the core must not depend on them.
_OUTSIDE_THE_CORE = {"server", "workers", "brokers", "storage"}
# Older than the rule (error trees and a type the core maps or names); to be moved into the core.
_CORE_IMPORTS_TO_MOVE = {
    ("mlgate/failures.py", "brokers.errors"),
    ("mlgate/failures.py", "storage"),
    ("mlgate/failures.py", "storage.describe_store"),
    ("mlgate/failures.py", "storage.errors"),
    ("mlgate/metrics.py", "brokers.base"),
}
# Not ours to shape: environments (.venv, and the bench's .venv-mlserver), build output and
# generated gRPC code.
_SKIPPED_DIRS = {".venv", "build", "__pycache__", ".git", ".mypy_cache", ".ruff_cache", "data"}


def _modules() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if _SKIPPED_DIRS & set(relative.parts) or any(
            part.endswith(".egg-info") or part.startswith(".venv") for part in relative.parts
        ):
            continue
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")):
            continue
        yield path


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module an import statement may load, at any depth: for
    ``from package import name`` both the package and ``package.name`` (``name`` may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield node.lineno, base
            separator = "." if node.module else ""
            for alias in node.names:
                yield node.lineno, f"{base}{separator}{alias.name}"


def _constants(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _constants(element)


def test_no_module_is_over_400_lines() -> None:
    long = {
        _name(path): count
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"


def test_nothing_outside_brokers_names_a_broker_backend() -> None:
    found = []
    for path in _modules():
        name = _name(path)
        if name.startswith(("brokers/", "tests/")):
            continue
        tree = _tree(path)
        for line, module in _imported(tree):
            parts = module.split(".")
            if parts[0] == "brokers" and len(parts) > 1 and parts[1] in BACKENDS:
                found.append(f"{name}:{line}: imports {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                named = {c for side in [node.left, *node.comparators] for c in _constants(side)}
                about_a_broker = "broker" in ast.unparse(node).lower()
                if named & _ONLY_BROKERS or (named & BACKENDS and about_a_broker):
                    found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.MatchValue) and _ONLY_BROKERS & set(_constants(node.value)):
                found.append(f"{name}:{node.lineno}: case {ast.unparse(node.value)}")
    assert not found, "broker backends named outside brokers/:\n" + "\n".join(found)


def test_tests_share_only_through_tests_support() -> None:
    found: dict[str, str] = {}  # one finding per import statement
    for path in _modules():
        name = _name(path)
        if not name.startswith("tests/"):
            continue
        for line, module in _imported(_tree(path)):
            parts = module.split(".")
            shared = parts[0] == "tests" and parts[1:2] == ["support"] and "conftest" not in parts
            if module.startswith(".") or (parts[0] == "tests" and not shared):
                found.setdefault(f"{name}:{line}", f"{name}:{line}: imports {module}")
    assert not found, (
        "tests import other test modules or conftests (move what they share to tests/support):\n"
        + "\n".join(found.values())
    )


def test_the_core_imports_nothing_built_on_it() -> None:
    found = []
    for path in _modules():
        name = _name(path)
        if not name.startswith("mlgate/"):
            continue
        for line, module in _imported(_tree(path)):
            parts = module.split(".")
            if len(parts) > 2 and (name, ".".join(parts[:2])) in _CORE_IMPORTS_TO_MOVE:
                continue  # a name from a listed module: listed with it
            if parts[0] in _OUTSIDE_THE_CORE and (name, module) not in _CORE_IMPORTS_TO_MOVE:
                found.append(f"{name}:{line}: imports {module}")
    assert not found, "the core (mlgate/) imports what is built on it:\n" + "\n".join(found)


def test_the_checks_see_the_tree() -> None:
    """The walk finds the project's modules and skips generated code, so the checks above are
    not passing on an empty list."""
    names = {_name(path) for path in _modules()}
    assert {"brokers/base.py", "server/app.py", "tests/contract/test_code_shape.py"} <= names
    assert not any("_pb2" in name for name in names)
