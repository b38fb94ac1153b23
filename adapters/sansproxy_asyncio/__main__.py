"""``python -m sansproxy_asyncio``: the ``sansproxy`` command on asyncio.

The same command as ``sansproxy``, with ``--loop asyncio`` unless the arguments choose a
loop themselves (``--loop uvloop``).
"""

import sys

from sansproxy_trio.cli import main

args = sys.argv[1:]
if not any(arg == "--loop" or arg.startswith("--loop=") for arg in args):
    args = ["--loop", "asyncio", *args]
sys.exit(main(args))
