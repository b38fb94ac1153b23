"""Property (e) over HTTP/2: once every connection is closed, the core holds nothing.

The same check as :mod:`test_no_leaks`, on random scenarios whose clients speak
HTTP/2 (over TLS, or h2c with prior knowledge): many streams per connection,
streams left open and ended later, clients that reset streams, send GOAWAY,
stop opening their windows or vanish mid-stream, next to backends that refuse,
stall, die or die part-way through a response. After every client closed and
time ran out, no connection may be open and ``statistics()`` must show empty
tables, with no timer left (the configuration has no health checks).
"""

from __future__ import annotations

from hypothesis import given

from tests.properties._strategies import Scenario, h2_scenarios
from tests.properties.test_no_leaks import check_nothing_left


@given(scenario=h2_scenarios)
def test_nothing_is_left_after_every_http2_connection_closed(scenario: Scenario) -> None:
    check_nothing_left(scenario)
