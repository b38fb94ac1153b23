"""Fuzz harnesses for the sansproxy core; run them with ``python -m fuzz`` (see README.md)."""
