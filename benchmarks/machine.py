"""What the numbers were measured on: CPU, kernel, memory, load, and every program's version."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.peers import REPO, Tools

__all__ = ["commit", "describe", "load_average"]


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    return found.group(1).strip() if found else "unknown"


def _memory() -> str:
    try:
        found = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    except OSError:
        return "unknown"
    return f"{int(found.group(1)) / 2**20:.1f} GiB" if found else "unknown"


def _dist(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def commit() -> str:
    """Which commit of the checkout is measured, and whether its code differs (read-only)."""
    head = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    try:
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "sansproxy", "adapters"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        status = ""
    return head + (" with uncommitted changes" if status.strip() else "")


def describe(tools: Tools) -> dict[str, str]:
    """Machine and versions, as label -> value, in the order the report shows them."""
    cpus = len(os.sched_getaffinity(0))
    hypervisor = " (virtual machine)" if "hypervisor" in _cpuinfo_flags() else ""
    info = {
        "CPU": f"{_cpu_model()}, {cpus} CPUs usable{hypervisor}",
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": sys.version.split()[0] + f" ({sys.executable})",
        "sansproxy": f"checkout {commit()} (h11 {_dist('h11')}, trio {_dist('trio')}, "
        f"uvloop {_dist('uvloop')})",
        "nginx": _first_line([tools.nginx, "-v"]) if tools.nginx else "not installed",
        "wrk": _first_line([tools.wrk, "-v"]) if tools.wrk else "not installed",
        "h2load": _first_line([tools.h2load, "--version"]) if tools.h2load else "not installed",
        "curl": " ".join(_first_line([tools.curl, "--version"]).split()[:2])
        if tools.curl
        else "not installed",
        "mitmproxy": _first_line([tools.mitmdump, "--version"]) if tools.mitmdump else "not found",
        "proxy.py": _dist("proxy.py"),
    }
    return {key: value.replace("|", "/") for key, value in info.items()}


def _cpuinfo_flags() -> str:
    try:
        found = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return ""
    return found.group(1) if found else ""
