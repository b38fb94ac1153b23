"""Which sansproxy is running, for ``sansproxy --version`` and the header of a recording.

The installed distribution's metadata is asked first (:mod:`importlib.metadata` reads the
``METADATA`` file, which is why this lives with the adapters and not in the pure core). A
source checkout that was never installed has no metadata: it reports
``sansproxy.__version__``, the one place the release is written (``pyproject.toml`` takes
its version from there, so the two only differ for a stale installation).
"""

from __future__ import annotations

import sys
from importlib import metadata

import sansproxy

__all__ = ["installed_version", "version_line"]


def installed_version() -> str:
    """The version of the installed ``sansproxy`` distribution, else ``sansproxy.__version__``."""
    try:
        return metadata.version("sansproxy")
    except metadata.PackageNotFoundError:
        return sansproxy.__version__


def version_line() -> str:
    """What ``sansproxy --version`` prints, e.g. ``sansproxy 0.1.0 (Python 3.11.2)``."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"sansproxy {installed_version()} (Python {python})"
