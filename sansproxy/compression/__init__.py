"""The pure building blocks of streaming response compression (issue 11).

Three modules, one job each, none doing I/O or reading the clock:

- :mod:`.negotiate`: which content coding a request's ``Accept-Encoding`` asks
  for, given the codings the server prefers (RFC 9110 §12.5.3);
- :mod:`.encoders`: streaming gzip, deflate, Brotli and Zstandard encoders with
  bounded memory, flushing each piece on request (server-sent events);
- :mod:`.decide`: whether a response may be compressed at all (and why not),
  and the response head of a compressed response.

They are not wired into routes or configuration yet; a response stage
(:class:`sansproxy.filters.ResponseStage`) will put them together.
"""

from __future__ import annotations
