"""The README's embedding example runs and shows what the core really does."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sansproxy import OpenUpstream, Send

README = Path(__file__).resolve().parent.parent / "README.md"


def test_embedding_example_runs_as_documented() -> None:
    text = README.read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert isinstance(namespace["open_upstream"], OpenUpstream)
    [send] = namespace["commands"]  # type: ignore[misc]
    assert isinstance(send, Send)
    assert send.data.startswith(b"GET / HTTP/1.1\r\nhost: a\r\nvia: 1.1 sansproxy\r\n")


def test_quick_start_is_two_commands_in_a_virtual_environment() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "Python 3.11 or newer" in section
    [block] = re.findall(r"```console\n(.*?)```", section, re.S)
    assert block.strip().splitlines() == [
        "python3 -m venv .venv && . .venv/bin/activate"
        " && pip install '.[server,test,uvloop]' && sansproxy demo",
        "python -m pytest",
    ]


def test_quick_start_python_matches_the_package() -> None:
    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["requires-python"] == ">=3.11"
    assert "uvloop" in project["project"]["optional-dependencies"]
