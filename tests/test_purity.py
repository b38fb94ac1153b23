"""The core stays pure: no I/O, no clock, no threads, no global randomness.

`sansproxy/` makes every decision from the events and the `now` it is given, so that the same
inputs always give the same commands and any run can be replayed. This file enforces that:

- statically, it parses every module of the core and fails, naming file, line and module, on an
  import of anything not on an allow-list (named pure modules of the standard library, `h11`
  in the HTTP/1 codec only, `h2` and its parts in the HTTP/2 codec only), on calls of the
  built-ins that do I/O or run code, and on reseeding or building a random generator;
- in a fresh interpreter, it imports the core and checks that no event loop or networking
  library came along with it;
- in two fresh interpreters with different `PYTHONHASHSEED`s, it plays one long scripted
  scenario (`tests/sim/hashseed_scenario.py`) and compares the complete traces, so that an
  iteration over a set or dict of strings that leaks into the output is caught.

The checker itself is tested on small files written to a temporary folder, so a rule that
silently stops matching is caught too.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "sansproxy"

# --- what the core may import ---------------------------------------------------------------
#
# An allow-list: a module is refused until someone has read what it does and added it here.
# Each entry names one module exactly. It allows that module and none of its submodules; a
# package's submodules are allowed one by one (`collections.abc` is, `http.client` is not;
# `json` is, its command-line `json.tool` is not). `from package import name` counts as an
# import of the submodule `package.name` when there is one, so `from http import client` is
# caught while `from http import HTTPStatus` is not.
STDLIB_ALLOWED = frozenset(
    {
        # The language: annotations, class machinery, typing.
        "__future__", "abc", "dataclasses", "enum", "types", "typing",
        # Containers, ordering and iteration (timer heaps, hash rings, windows).
        "bisect", "collections", "collections.abc", "functools", "heapq", "itertools",
        "operator",
        # Numbers and bytes. hashlib: ring_hash and sticky-cookie digests. hmac: signing and
        # constant-time comparison of credentials. struct: binary frame headers. zlib: pure
        # computation, for response compression. base64 and binascii: Basic auth, encodings.
        # base64's encode()/decode() and hashlib's file_digest() only touch file objects
        # their caller passes in, as tomllib.load() and json.load() do.
        "base64", "binascii", "hashlib", "hmac", "math", "struct", "zlib",
        # Text: field and path grammar, "did you mean" hints in configuration errors.
        "difflib", "re", "string",
        # HTTP and addresses. `http` is the package alone, for HTTPStatus and HTTPMethod: its
        # submodules do network I/O (client, server) or read the clock (cookiejar, cookies).
        # urllib.parse splits and quotes URLs; urllib's other submodules do network I/O.
        "http", "ipaddress", "urllib.parse",
        # Configuration: the caller reads the file, the core parses the text.
        "json", "tomllib",
    }
)  # fmt: skip

# The libraries the core wraps, each allowed (with every submodule) in one module of the core,
# the codec that puts it behind the codec interface (STYLE.md: one wrapper per library).
# `hpack` and `hyperframe` are h2's own building blocks and belong with it.
LIBRARY_HOMES: dict[str, str] = {
    "h11": "_codec/http1.py",
    "h2": "_codec/http2.py",
    "hpack": "_codec/http2.py",
    "hyperframe": "_codec/http2.py",
    # The optional compression libraries, behind the one module of encoders.
    "brotli": "compression/encoders.py",
    "zstandard": "compression/encoders.py",
}

# Importable only for annotations, inside `if TYPE_CHECKING:`. The core is handed a seeded
# `random.Random` by its caller and must never reach the module-level generator.
TYPE_ONLY_MODULES = frozenset({"random"})

# Modules a protocol core might reach for that are kept off the list on purpose, with the
# reason a violation gives. Not exhaustive: whatever STDLIB_ALLOWED does not name is refused.
NOT_ALLOWED_BECAUSE: dict[str, str] = {
    # Dates: the core formats and parses HTTP dates itself, from the `wall` it is given.
    "email": (
        "email.utils' date helpers read the clock (formatdate, localtime) and make_msgid()"
        " reads the host name and the global random"
    ),
    "http.cookiejar": "its date helpers read the clock",
    "http.cookies": "its expiry dates are computed from the clock",
    "datetime": "datetime.now() and date.today() read the clock",
    "calendar": "it prints calendars and imports datetime and locale",
    "time": "it reads the clock",
    "uuid": "uuid1() reads the clock and the MAC address, uuid4() the OS's entropy",
    "secrets": "it reads the OS's entropy, so a run could not be replayed",
    # I/O, the process, concurrency.
    "http.client": "it does network I/O",
    "http.server": "it does network I/O",
    "urllib.request": "it does network I/O",
    "socket": "network I/O is the adapters' job",
    "ssl": "TLS is the adapters' job",
    "selectors": "waiting on sockets is the adapters' job",
    "select": "waiting on sockets is the adapters' job",
    "asyncio": "the core is not tied to an event loop",
    "os": "files, environment and processes",
    "sys": "interpreter state and the standard streams",
    "io": "files and streams",
    "codecs": "codecs.open() opens files; str.encode and bytes.decode do the core's work",
    "contextlib": "chdir() and redirect_stdout() change process-wide state",
    "locale": "process-wide settings taken from the environment",
    "threading": "each call into the core is one synchronous turn",
    "concurrent": "each call into the core is one synchronous turn",
    "multiprocessing": "each call into the core is one synchronous turn",
    "subprocess": "it starts processes",
    "logging": "logs leave the core as Log commands",
    "importlib": "no dynamic imports",
    "weakref": "it follows the garbage collector, which no event controls",
    "gc": "it follows the garbage collector, which no event controls",
    "decimal": "its arithmetic context is a per-thread global",
    "json.tool": "a command-line tool that reads and writes files",
    "sansproxy_io": "the core never depends on an adapter",
    "sansproxy_trio": "the core never depends on an adapter",
    "sansproxy_asyncio": "the core never depends on an adapter",
}

FORBIDDEN_CALLS = frozenset(
    {"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__"}
)

# Methods that put the injected generator into a state of the core's own choosing. `seed`
# with no argument even reseeds it from the OS's entropy. `setstate` is the same thing.
RESEEDING_METHODS = frozenset({"seed", "setstate"})

# A generator made inside the core would not be the one the caller seeded.
GENERATOR_CLASSES = frozenset({"Random", "SystemRandom"})


@dataclass(frozen=True, slots=True)
class Violation:
    """One impure construct, located in its source file."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _longest_rule(module: str, rules: dict[str, str] | frozenset[str]) -> str | None:
    """Return the longest entry of `rules` that `module` is, or is a submodule of."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in rules:
            return prefix
    return None


@functools.cache
def _is_submodule(package: str, name: str) -> bool:
    """Whether `package.name` is a module rather than an attribute of `package`.

    Only asked about packages on STDLIB_ALLOWED, so what it imports to find out (the parents
    of a dotted `package`) is pure. `package` itself is not imported.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return False
    locations = list(spec.submodule_search_locations)
    return importlib.machinery.PathFinder.find_spec(f"{package}.{name}", locations) is not None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.relative = path.relative_to(root).as_posix()
        self.core = root.name
        # The package a relative import starts from: the folder the module is in.
        self.package = [self.core, *path.parent.relative_to(root).parts]
        self.type_checking_depth = 0
        self.violations: list[Violation] = []

    def _report(self, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(self.path, getattr(node, "lineno", 0), message))

    # -- imports --

    def _refusal(self, module: str) -> str | None:
        """Why importing `module` here is a violation, or None when it is allowed."""
        top = module.partition(".")[0]
        if top == self.core:
            return None
        home = LIBRARY_HOMES.get(top)
        if home is not None:
            if self.relative == home:
                return None
            return f"outside {self.core}/{home}, the one module that wraps {top}"
        if _longest_rule(module, TYPE_ONLY_MODULES) is not None:
            if self.type_checking_depth:
                return None
            return (
                "at run time (only allowed under `if TYPE_CHECKING:`;"
                " take a random.Random from the caller)"
            )
        if module in STDLIB_ALLOWED:
            return None
        excluded = _longest_rule(module, NOT_ALLOWED_BECAUSE)
        if excluded is not None:
            return f"(not allowed in the core: {NOT_ALLOWED_BECAUSE[excluded]})"
        return (
            "(not on the core's allow-list; if it is pure, add it to STDLIB_ALLOWED"
            " in tests/test_purity.py)"
        )

    def _check_module(self, node: ast.AST, module: str) -> None:
        refusal = self._refusal(module)
        if refusal is not None:
            self._report(node, f"imports {module!r} {refusal}")

    def _from_targets(self, module: str, names: list[ast.alias]) -> Iterator[str]:
        """The modules that `from module import names` imports."""
        for alias in names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                yield module
            elif module in STDLIB_ALLOWED:
                yield full if _is_submodule(module, alias.name) else module
            elif self._refusal(full) is None:
                yield full  # `from urllib import parse`: the allowed `urllib.parse`
            else:
                yield module

    def _absolute(self, node: ast.ImportFrom) -> str | None:
        """The module a relative import names, or None if it climbs out of the core."""
        if node.level > len(self.package):
            return None
        base = self.package[: len(self.package) - node.level + 1]
        return ".".join([*base, node.module] if node.module else base)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = self._absolute(node) if node.level else node.module or ""
        if module is None:
            dots = "." * node.level
            self._report(node, f"imports {dots}{node.module or ''}, which climbs out of the core")
            return
        for target in dict.fromkeys(self._from_targets(module, node.names)):
            self._check_module(node, target)
        for alias in node.names:
            if alias.name == "SystemRandom":
                self._report(node, f"imports SystemRandom from {module!r} (the OS's entropy)")

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

    # -- calls and names --

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            self._report(node, f"calls {func.id}() (the core does no I/O and runs no code)")
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if isinstance(func, ast.Attribute) and name in RESEEDING_METHODS:
            self._report(
                node,
                f"calls .{name}() (the core never reseeds the random.Random it is given)",
            )
        if name in GENERATOR_CLASSES:
            self._report(
                node,
                f"constructs {name}() (every random choice comes from the random.Random"
                " the caller injects)",
            )
            # Visit all but the class name itself, so that it is not reported twice.
            if isinstance(func, ast.Attribute):
                self.visit(func.value)
            for child in (*node.args, *node.keywords):
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "SystemRandom":
            self._report(node, "uses SystemRandom (the OS's entropy: a run cannot be replayed)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "SystemRandom":
            self._report(node, "uses SystemRandom (the OS's entropy: a run cannot be replayed)")
        self.generic_visit(node)


def scan_source(source: str, path: Path, root: Path) -> list[Violation]:
    """Return the impure constructs in the source of `path`, a module of the package `root`."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, f"does not parse: {exc.msg}")]
    scanner = _Scanner(path, root)
    scanner.visit(tree)
    return scanner.violations


def scan_tree(root: Path) -> tuple[list[Path], list[Violation]]:
    """Scan every `.py` file of the package at `root`; return the files and the violations."""
    files = sorted(root.rglob("*.py"))
    violations: list[Violation] = []
    for path in files:
        violations.extend(scan_source(path.read_text(encoding="utf-8"), path, root))
    return files, violations


# --- the core itself ------------------------------------------------------------------------


def test_core_is_pure() -> None:
    files, violations = scan_tree(CORE)
    assert CORE / "__init__.py" in files, f"no core package found at {CORE}"
    assert CORE / LIBRARY_HOMES["h11"] in files, "the HTTP/1 codec moved: update LIBRARY_HOMES"
    assert not violations, "impure code in the core:\n" + "\n".join(map(str, violations))


def test_allow_list_names_real_standard_library_modules() -> None:
    for module in sorted(STDLIB_ALLOWED | TYPE_ONLY_MODULES):
        assert module.partition(".")[0] in sys.stdlib_module_names, module
        assert importlib.util.find_spec(module) is not None, module
    for module in sorted(STDLIB_ALLOWED):
        assert _longest_rule(module, NOT_ALLOWED_BECAUSE) is None, f"{module} is refused too"
    assert not STDLIB_ALLOWED & TYPE_ONLY_MODULES


# Framework and networking modules that importing the core must not load, even indirectly.
# `logging` and `threading` are not listed: h2, which the HTTP/2 codec will import, imports
# `logging` itself, and `logging` imports `threading`.
MUST_NOT_LOAD = (
    "asyncio", "trio", "anyio", "ssl", "socket", "selectors", "select", "subprocess",
    "multiprocessing", "concurrent", "httpx", "email", "http.client", "http.server",
    "urllib.request",
)  # fmt: skip

_IMPORT_EVERYTHING = """
import json, pkgutil, sys
before = set(sys.modules)
import sansproxy
for info in pkgutil.walk_packages(sansproxy.__path__, "sansproxy."):
    __import__(info.name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _child_env(**extra: str) -> dict[str, str]:
    """The environment of a child interpreter that imports the same core as this process."""
    import sansproxy

    origin = str(Path(sansproxy.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [origin, str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_importing_the_core_loads_no_io_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "sansproxy" in loaded
    offenders = sorted(
        module for module in loaded if _longest_rule(module, frozenset(MUST_NOT_LOAD)) is not None
    )
    assert not offenders, f"importing sansproxy loaded {offenders}"


# --- the same commands under every hash seed -----------------------------------------------

HASH_SEEDS = ("0", "12345")


def _play_scenario(hash_seed: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tests.sim.hashseed_scenario", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_child_env(PYTHONHASHSEED=hash_seed),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_hash_seed_reaches_the_scenario() -> None:
    # The control prints a set of strings: if it comes out the same, the seeds did not take
    # effect and the comparison below would prove nothing.
    controls = {seed: _play_scenario(seed, "--control") for seed in HASH_SEEDS}
    assert len(set(controls.values())) == len(HASH_SEEDS), controls


def test_commands_do_not_depend_on_the_hash_seed() -> None:
    # The playbook's twin cores share one interpreter, hence one hash seed, so they cannot see
    # an iteration over a set or dict of str or bytes that leaks into the output. Fresh
    # interpreters with different seeds can. The scenario covers much of the core (see its
    # docstring) and asserts that it did.
    seed_a, seed_b = HASH_SEEDS
    first, second = (_play_scenario(seed).splitlines() for seed in HASH_SEEDS)
    assert len(first) > 1000, "the scenario's trace is suspiciously short"
    if first != second:
        diff = difflib.unified_diff(
            first,
            second,
            fromfile=f"PYTHONHASHSEED={seed_a}",
            tofile=f"PYTHONHASHSEED={seed_b}",
            lineterm="",
            n=2,
        )
        shown = [line if len(line) < 240 else line[:240] + "..." for line in list(diff)[:40]]
        pytest.fail("the trace depends on the hash seed:\n" + "\n".join(shown))


# --- the checker, on files made up for the purpose ------------------------------------------


def _core(tmp_path: Path, files: dict[str, str]) -> Path:
    """Write a made-up core package (named like the real one) and return its folder."""
    root = tmp_path / "sansproxy"
    for relative, source in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source) + "\n")
    return root


# (module of the core, source, a word the one violation must contain)
IMPURE = [
    # standard library modules off the list, however they are imported
    ("bad.py", "import time", "'time'"),
    ("bad.py", "import os.path", "'os.path'"),
    ("bad.py", "from os import path", "'os'"),
    ("bad.py", "from concurrent.futures import ThreadPoolExecutor", "'concurrent.futures'"),
    ("bad.py", "import fractions", "not on the core's allow-list"),
    ("bad.py", "import timeit_is_not_time as t", "'timeit_is_not_time'"),
    ("bad.py", "import xml.etree.ElementTree", "'xml.etree.ElementTree'"),
    ("bad.py", "import logging", "'logging'"),
    ("bad.py", "from datetime import datetime", "read the clock"),
    ("bad.py", "import trio", "'trio'"),
    ("bad.py", "import sansproxy_trio", "never depends on an adapter"),
    # allowed packages whose submodules are not
    ("bad.py", "from http import client", "'http.client'"),
    ("bad.py", "from http.client import HTTPConnection", "'http.client'"),
    ("bad.py", "import http.cookiejar", "read the clock"),
    ("bad.py", "from http import HTTPStatus, cookies", "'http.cookies'"),
    ("bad.py", "from json import tool", "'json.tool'"),
    ("bad.py", "from urllib import request", "'urllib'"),
    ("bad.py", "import urllib.request", "'urllib.request'"),
    ("bad.py", "import urllib", "'urllib'"),
    # HTTP dates must not come from the clock-reading helpers
    ("bad.py", "import email.utils", "'email.utils'"),
    ("bad.py", "from email.utils import parsedate_to_datetime", "read the clock"),
    ("bad.py", "from email import utils", "'email'"),
    # the wrapped libraries, outside their codec
    ("headers.py", "import h11", "outside sansproxy/_codec/http1.py"),
    ("_codec/__init__.py", "from h11 import Request", "'h11'"),
    ("_codec/http2.py", "import h11", "'h11'"),
    ("http1.py", "import h11._readers", "'h11._readers'"),
    ("proxy.py", "import h2.connection", "outside sansproxy/_codec/http2.py"),
    ("_codec/http1.py", "from h2.events import DataReceived", "'h2.events'"),
    ("_codec/__init__.py", "from hpack import Encoder", "'hpack'"),
    ("upstream.py", "import hyperframe.frame", "'hyperframe.frame'"),
    ("_codec/http1.py", "from hyperframe import frame", "'hyperframe"),
    ("headers.py", "if TYPE_CHECKING:\n    import h11", "'h11'"),
    # random: types only
    ("bad.py", "import random", "'random'"),
    ("bad.py", "from random import Random", "'random'"),
    ("bad.py", "from random import choice", "at run time"),
    ("bad.py", "if TYPE_CHECKING:\n    pass\nelse:\n    import random", "'random'"),
    # where an import sits does not matter
    ("bad.py", "def f():\n    import socket", "'socket'"),
    ("bad.py", "if TYPE_CHECKING:\n    import ssl", "'ssl'"),
    ("bad.py", "try:\n    import asyncio\nexcept ImportError:\n    pass", "'asyncio'"),
    # relative imports that leave the core
    ("bad.py", "from .. import tests", "climbs out of the core"),
    ("config/bad.py", "from ...elsewhere import x", "climbs out of the core"),
    # built-ins that do I/O or run code
    ("bad.py", "x = open('f')", "open()"),
    ("bad.py", "def f(x):\n    print(x)", "print()"),
    ("bad.py", "y = input()", "input()"),
    ("bad.py", "m = __import__('os')", "__import__()"),
    ("bad.py", "eval('1')", "eval()"),
    # the injected generator is used as it is
    ("bad.py", "def f(rng):\n    rng.seed(7)", ".seed()"),
    ("bad.py", "def f(self):\n    self._rng.seed()", ".seed()"),
    ("bad.py", "def f(rng, state):\n    rng.setstate(state)", ".setstate()"),
    ("bad.py", "rng = random.Random(1)", "constructs Random()"),
    ("bad.py", "rng = Random()", "constructs Random()"),
    ("bad.py", "rng = random.SystemRandom()", "constructs SystemRandom()"),
    ("bad.py", "def f(rng: random.SystemRandom) -> None: ...", "SystemRandom"),
    ("bad.py", "if TYPE_CHECKING:\n    from random import SystemRandom", "SystemRandom"),
]

PURE = [
    ("ok.py", "import dataclasses\nimport heapq\nfrom typing import TYPE_CHECKING"),
    ("ok.py", "from __future__ import annotations\nfrom collections.abc import Sequence"),
    ("ok.py", "from collections import abc, deque\nimport collections.abc"),
    ("ok.py", "import zlib\nimport base64, binascii, struct, hmac, hashlib"),
    ("ok.py", "from http import HTTPStatus, HTTPMethod\nimport http"),
    ("ok.py", "from json import loads\nimport tomllib"),
    ("ok.py", "from urllib.parse import urlsplit\nfrom urllib import parse"),
    # the core's own modules, absolute or relative (staying inside the core)
    ("ok.py", "import sansproxy.events\nfrom sansproxy.commands import Send"),
    ("ok.py", "from . import events\nfrom .commands import Send"),
    ("config/ok.py", "from .. import events\nfrom ..commands import Send\nfrom .model import X"),
    ("config/__init__.py", "from . import model\nfrom ._parse import parse_config"),
    ("_codec/deep/ok.py", "from ... import events\nfrom ...config import model"),
    # the wrapped libraries in their codecs
    ("_codec/http1.py", "import h11\nfrom h11 import Request"),
    (
        "_codec/http2.py",
        "import h2.connection\nfrom h2.config import H2Configuration\n"
        "import hpack\nfrom hyperframe.frame import SettingsFrame",
    ),
    # random for annotations only, and the injected generator used as it is
    ("ok.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random"),
    ("ok.py", "import typing\nif typing.TYPE_CHECKING:\n    from random import Random"),
    ("ok.py", "def f(rng: 'random.Random') -> float:\n    return rng.random()"),
    ("ok.py", "def f(rng: Random) -> float:\n    return rng.choice([1, 2]) + rng.uniform(0, 1)"),
    ("ok.py", "def seed(x):\n    return x\n\nclass C:\n    seed = 1\n\nC.seed + 1"),
    ("ok.py", "class C:\n    def print(self) -> None: ...\n\nC().print()"),
]


@pytest.mark.parametrize(("module", "source", "needle"), IMPURE, ids=[s for _, s, _ in IMPURE])
def test_checker_flags(tmp_path: Path, module: str, source: str, needle: str) -> None:
    root = _core(tmp_path, {module: "x = 1\n" + textwrap.dedent(source)})
    bad = root / module

    _, violations = scan_tree(root)

    assert len(violations) == 1, violations
    (violation,) = violations
    assert violation.path == bad
    assert violation.line >= 2  # located at the construct, not the file start
    assert needle in violation.message
    assert str(violation).startswith(f"{bad}:{violation.line}: ")


@pytest.mark.parametrize(("module", "source"), PURE, ids=[s for _, s in PURE])
def test_checker_allows(tmp_path: Path, module: str, source: str) -> None:
    root = _core(tmp_path, {module: source})
    _, violations = scan_tree(root)
    assert violations == []


def test_checker_names_file_line_and_module(tmp_path: Path) -> None:
    root = _core(tmp_path, {"many.py": "import time\nimport dataclasses\nimport socket\nprint(1)"})
    _, violations = scan_tree(root)
    assert [str(v).split(" (")[0] for v in violations] == [
        f"{root / 'many.py'}:1: imports 'time'",
        f"{root / 'many.py'}:3: imports 'socket'",
        f"{root / 'many.py'}:4: calls print()",
    ]


def test_checker_reports_each_module_of_one_import_once(tmp_path: Path) -> None:
    root = _core(
        tmp_path, {"bad.py": "from os import path, sep\nfrom urllib import parse, request"}
    )
    _, violations = scan_tree(root)
    assert [(v.line, v.message.split(" (")[0]) for v in violations] == [
        (1, "imports 'os'"),
        (2, "imports 'urllib'"),
    ]


def test_checker_reports_unparsable_files(tmp_path: Path) -> None:
    root = _core(tmp_path, {"broken.py": "def (:"})
    _, violations = scan_tree(root)
    assert len(violations) == 1
    assert "does not parse" in violations[0].message
