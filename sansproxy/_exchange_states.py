"""The life of an exchange as a transition table: the source of truth for its states.

Theory of operation (h11's style): an :class:`~sansproxy.exchange.Exchange` is in
exactly one :class:`State`; it changes state only through :data:`TRANSITIONS`,
keyed by ``(state, trigger)``. A pair missing from the table is a bug in the core
and raises :class:`IllegalTransition`. ``docs/architecture.md`` draws the table
(:func:`mermaid`), and a test fails when the drawing and the table disagree.

The request body is the one thing not in the state: it streams in beside every
state (a backend may answer before the upload ends), so whether it has ended is
a fact of its own, ``Exchange.request_complete``.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TRANSITIONS", "IllegalTransition", "State", "Trigger", "mermaid"]


class State(Enum):
    """Where an exchange is."""

    __hash__ = object.__hash__  # members are singletons: identity is enough, and faster

    ROUTING = "routing"
    """The request head arrived; it is checked, routed and filtered (within one turn)."""
    LOCAL = "local"
    """The proxy answered it itself; the rest of the request body is read and dropped."""
    CACHE_WAIT = "cache wait"
    """Waiting for another request's response for the same URI (request coalescing)."""
    QUEUED = "queued"
    """Every server that may take it is at its connection cap: waiting for room."""
    BACKOFF = "backoff"
    """A try failed; waiting a jittered backoff before the next."""
    CONNECTING = "connecting"
    """A new upstream connection is being opened for this try."""
    FORWARDING = "forwarding"
    """On a connected upstream: the request goes up, the response head is awaited."""
    RESPONDING = "responding"
    """The response head went to the client; its body streams down."""
    TUNNEL = "tunnel"
    """The backend switched protocols (101): bytes are relayed both ways."""
    DONE = "done"
    """Over: answered, failed or aborted; the access record is written."""


class Trigger(Enum):
    """What moves an exchange from one state to the next."""

    __hash__ = object.__hash__

    ANSWER = "answer locally"
    COALESCE = "wait for the same miss"
    RESUME = "the miss is over"
    QUEUE = "wait for room"
    BACK_OFF = "back off"
    CONNECT = "open a connection"
    REUSE = "take a pooled connection"
    CONNECTED = "connected"
    RESPOND = "response head"
    SWITCH = "101 switching protocols"
    FINISH = "finish"
    FAIL = "fail"


S = State
T = Trigger

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.ROUTING, T.ANSWER): S.LOCAL,
    (S.ROUTING, T.COALESCE): S.CACHE_WAIT,
    (S.CACHE_WAIT, T.RESUME): S.ROUTING,
    # A revalidation that fails may be answered from the store (stale-if-error).
    (S.QUEUED, T.ANSWER): S.LOCAL,
    (S.BACKOFF, T.ANSWER): S.LOCAL,
    (S.CONNECTING, T.ANSWER): S.LOCAL,
    (S.FORWARDING, T.ANSWER): S.LOCAL,
    (S.ROUTING, T.QUEUE): S.QUEUED,
    (S.ROUTING, T.CONNECT): S.CONNECTING,
    (S.ROUTING, T.REUSE): S.FORWARDING,
    # Room freed, but not on a server this request may use: it queues again.
    (S.QUEUED, T.QUEUE): S.QUEUED,
    (S.QUEUED, T.CONNECT): S.CONNECTING,
    (S.QUEUED, T.REUSE): S.FORWARDING,
    (S.BACKOFF, T.QUEUE): S.QUEUED,
    (S.BACKOFF, T.CONNECT): S.CONNECTING,
    (S.BACKOFF, T.REUSE): S.FORWARDING,
    # A failed connect fails over at once; a stale pooled connection is replaced.
    (S.CONNECTING, T.CONNECT): S.CONNECTING,
    (S.CONNECTING, T.REUSE): S.FORWARDING,
    (S.CONNECTING, T.QUEUE): S.QUEUED,
    (S.CONNECTING, T.CONNECTED): S.FORWARDING,
    (S.CONNECTING, T.BACK_OFF): S.BACKOFF,
    (S.FORWARDING, T.CONNECT): S.CONNECTING,
    (S.FORWARDING, T.BACK_OFF): S.BACKOFF,
    (S.FORWARDING, T.RESPOND): S.RESPONDING,
    (S.FORWARDING, T.SWITCH): S.TUNNEL,
    (S.LOCAL, T.FINISH): S.DONE,
    (S.RESPONDING, T.FINISH): S.DONE,
    (S.TUNNEL, T.FINISH): S.DONE,
    **{(state, T.FAIL): S.DONE for state in State if state is not S.DONE},
}
"""Every legal ``(state, trigger) -> next state``; anything else is a bug."""


class IllegalTransition(AssertionError):
    """The core tried a transition the table does not have (a bug in sansproxy)."""


def mermaid() -> str:
    """The table as a mermaid state diagram, as ``docs/architecture.md`` shows it."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.ROUTING.name}"]
    for (state, trigger), target in TRANSITIONS.items():
        if trigger is T.FAIL and state is not S.ROUTING:
            continue  # drawn once, below, to keep the diagram readable
        lines.append(f"    {state.name} --> {target.name}: {trigger.value}")
    lines.append("    note right of DONE: every state but DONE can fail to DONE")
    lines.append(f"    {S.DONE.name} --> [*]")
    return "\n".join(lines)
