"""What every sansproxy adapter shares, whatever its event loop.

``runner`` feeds events to the core and carries out its commands (the
connection table, one turn per event, the single timer); ``tls`` builds the
SSL contexts; ``accesslog`` formats access-log lines. Nothing here imports
an event loop: each adapter supplies its loop's primitives.
"""
