"""The core stays pure: no I/O, no clock, no threads, no global randomness.

`sansproxy/` makes every decision from the events and the `now` it is given, so that the same
inputs always give the same commands and any run can be replayed. This file enforces that
statically: it parses every module of the core and fails, naming file and line, on an import of
a module that does I/O, reads the clock or starts threads, and on calls to the built-ins that do
I/O. A second test imports the core in a fresh interpreter and checks that no event loop or
networking library came along with it.

The checker itself is tested on small files written to a temporary folder, so a rule that
silently stops matching is caught too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "sansproxy"

# A module is forbidden together with all of its submodules (`os` covers `os.path`).
FORBIDDEN_MODULES = frozenset(
    {
        # I/O, networking and event loops
        "socket", "ssl", "selectors", "select", "asyncio", "trio", "anyio", "io", "mmap",
        "fcntl", "pathlib", "shutil", "tempfile", "glob", "os", "sys", "builtins", "signal",
        "urllib.request", "http.client", "http.server", "requests", "httpx",
        # threads and processes
        "threading", "_thread", "multiprocessing", "subprocess", "concurrent", "sched",
        # the clock and the outside world's randomness
        "time", "datetime", "secrets", "uuid",
        # side channels: logs leave the core as commands; no dynamic imports
        "logging", "importlib",
        # the core never depends on an adapter
        "sansproxy_trio", "sansproxy_asyncio",
    }
)  # fmt: skip

# Importable only for annotations, inside `if TYPE_CHECKING:`. The core is handed a seeded
# `random.Random` by its caller and must never reach the module-level generator.
TYPE_ONLY_MODULES = frozenset({"random"})

FORBIDDEN_CALLS = frozenset(
    {"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__"}
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One impure construct, located in its source file."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _matching_rule(module: str, rules: frozenset[str]) -> str | None:
    """Return the entry of `rules` that `module` is, or is a submodule of."""
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in rules:
            return prefix
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.type_checking_depth = 0
        self.violations: list[Violation] = []

    def _report(self, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(self.path, getattr(node, "lineno", 0), message))

    def _check_module(self, node: ast.AST, module: str) -> bool:
        """Report `module` if forbidden here; return whether it was reported."""
        rule = _matching_rule(module, FORBIDDEN_MODULES)
        if rule is not None:
            self._report(node, f"imports {module!r} (forbidden in the core: {rule})")
            return True
        rule = _matching_rule(module, TYPE_ONLY_MODULES)
        if rule is not None and self.type_checking_depth == 0:
            self._report(
                node,
                f"imports {module!r} at run time (only allowed under `if TYPE_CHECKING:`;"
                " take a random.Random from the caller)",
            )
            return True
        return False

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking_depth += 1
        for statement in node.body:
            self.visit(statement)
        self.type_checking_depth -= 1
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level > 0:
            return  # relative: a module of the core itself
        module = node.module or ""
        if self._check_module(node, module):
            return
        # `from urllib import request` imports the module `urllib.request`.
        for alias in node.names:
            if self._check_module(node, f"{module}.{alias.name}"):
                return

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            self._report(node, f"calls {node.func.id}() (the core does no I/O)")
        self.generic_visit(node)


def scan_source(source: str, path: Path) -> list[Violation]:
    """Return the impure constructs in one module's source."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, f"does not parse: {exc.msg}")]
    scanner = _Scanner(path)
    scanner.visit(tree)
    return scanner.violations


def scan_tree(root: Path) -> tuple[list[Path], list[Violation]]:
    """Scan every `.py` file under `root`; return the files seen and the violations found."""
    files = sorted(root.rglob("*.py"))
    violations: list[Violation] = []
    for path in files:
        violations.extend(scan_source(path.read_text(encoding="utf-8"), path))
    return files, violations


# --- the core itself ------------------------------------------------------------------------


def test_core_is_pure() -> None:
    files, violations = scan_tree(CORE)
    assert CORE / "__init__.py" in files, f"no core package found at {CORE}"
    assert not violations, "impure code in the core:\n" + "\n".join(map(str, violations))


# Framework and networking modules that importing the core must not load, even indirectly.
# `socket` and `selectors` are not listed: `email.utils`, which the core may use to parse HTTP
# dates, imports them without using them; the AST scan above already bans direct use. `logging`
# and `threading` are not listed either: h2 imports `logging` itself.
MUST_NOT_LOAD = ("asyncio", "trio", "anyio", "ssl", "subprocess", "multiprocessing", "httpx")

_IMPORT_EVERYTHING = """
import json, pkgutil, sys
before = set(sys.modules)
import sansproxy
for info in pkgutil.walk_packages(sansproxy.__path__, "sansproxy."):
    __import__(info.name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_the_core_loads_no_io_framework() -> None:
    import sansproxy

    # Make the child import the same copy of the core that this process sees.
    origin = str(Path(sansproxy.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([origin, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "sansproxy" in loaded
    offenders = sorted({m.split(".")[0] for m in loaded} & set(MUST_NOT_LOAD))
    assert not offenders, f"importing sansproxy loaded {offenders}"


# --- the checker, on files made up for the purpose ------------------------------------------

IMPURE = {
    "import time": "time",
    "import os.path": "os",
    "from os import path": "os",
    "from concurrent.futures import ThreadPoolExecutor": "concurrent",
    "from urllib import request": "urllib.request",
    "import urllib.request": "urllib.request",
    "import logging": "logging",
    "from datetime import datetime": "datetime",
    "import trio": "trio",
    "import random": "random",
    "from random import Random": "random",
    "def f():\n    import socket": "socket",
    "if TYPE_CHECKING:\n    import ssl": "ssl",
    "if TYPE_CHECKING:\n    pass\nelse:\n    import random": "random",
    "try:\n    import asyncio\nexcept ImportError:\n    pass": "asyncio",
    "x = open('f')": "open()",
    "def f(x):\n    print(x)": "print()",
    "y = input()": "input()",
    "m = __import__('os')": "__import__()",
}

PURE = [
    "import dataclasses\nimport heapq\nfrom typing import TYPE_CHECKING",
    "from urllib.parse import urlsplit",
    "import email.utils",
    "import h11\nimport h2.connection",
    "from . import events\nfrom .commands import Send",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random",
    "import typing\nif typing.TYPE_CHECKING:\n    from random import Random",
    "def f(rng: 'random.Random') -> float:\n    return rng.random()",
    "class C:\n    def print(self) -> None: ...\n\nC().print()",
    "import timeit_is_not_time as t",
]


@pytest.mark.parametrize(("source", "needle"), IMPURE.items(), ids=list(IMPURE))
def test_checker_flags(tmp_path: Path, source: str, needle: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("x = 1\n" + textwrap.dedent(source) + "\n")

    files, violations = scan_tree(tmp_path)

    assert len(files) == 2
    assert len(violations) == 1, violations
    (violation,) = violations
    assert violation.path == package / "bad.py"
    assert violation.line >= 2  # located at the construct, not the file start
    assert needle in violation.message
    assert str(violation).startswith(f"{package / 'bad.py'}:{violation.line}: ")


@pytest.mark.parametrize("source", PURE)
def test_checker_allows(tmp_path: Path, source: str) -> None:
    (tmp_path / "ok.py").write_text(textwrap.dedent(source) + "\n")
    _, violations = scan_tree(tmp_path)
    assert violations == []


def test_checker_reports_every_violation_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "many.py").write_text("import time\nimport dataclasses\nimport socket\nprint(1)\n")
    _, violations = scan_tree(tmp_path)
    assert [v.line for v in violations] == [1, 3, 4]


def test_checker_reports_unparsable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def (:\n")
    _, violations = scan_tree(tmp_path)
    assert len(violations) == 1
    assert "does not parse" in violations[0].message
