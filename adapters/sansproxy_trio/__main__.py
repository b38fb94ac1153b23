"""``python -m sansproxy_trio``: the ``sansproxy`` command."""

import sys

from sansproxy_trio.cli import main

sys.exit(main())
