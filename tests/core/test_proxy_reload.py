"""Playbooks of a live configuration reload (ConfigReloaded)."""

from __future__ import annotations

import dataclasses

import pytest

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.config import Listener, quick_config
from sansproxy.errors import UsageError
from sansproxy.events import ConfigReloaded, ConnId, DataReceived, EofReceived, UpstreamConnected
from tests.core.conftest import LISTEN, PLAIN
from tests.playbook import Placeholder, Playbook

GET_X = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_X = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"
GET_Y = b"GET /y HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_Y = b"GET /y HTTP/1.1\r\nhost: example.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _moved_to(url: str):  # type: ignore[no-untyped-def]
    """The same listener, now in front of one backend at ``url``."""
    return dataclasses.replace(quick_config([LISTEN], [url]), headers=PLAIN)


def test_in_flight_exchange_finishes_and_the_next_request_follows_the_new_config(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    new = Placeholder(ConnId)
    assert (
        pb
        # The backend moves while /x is in flight; the old pooled connection is closed
        # once /x is answered, since its server is gone.
        >> ConfigReloaded(config=_moved_to("http://10.0.0.9:9009"))
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c, data=OK_OUT)
        << Close(conn=u)
        >> DataReceived(conn=c, data=GET_Y)
        << OpenUpstream(conn=new, host="10.0.0.9", port=9009)
        >> UpstreamConnected(conn=new)
        << Send(conn=new, data=FWD_Y)
        >> DataReceived(conn=new, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=new)
        << Close(conn=new)
    )
    kit.assert_clean(pb)


def test_idle_connections_to_a_removed_server_are_closed(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    assert pb >> ConfigReloaded(config=_moved_to("http://10.0.0.9:9009")) << Close(conn=u)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


def test_idle_connections_to_a_kept_server_stay_pooled(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    same = dataclasses.replace(kit.config(), limits=dataclasses.replace(kit.config().limits))
    assert pb >> ConfigReloaded(config=same)
    assert pb >> DataReceived(conn=c, data=GET_Y) << Send(conn=u, data=FWD_Y)


def test_a_reload_cannot_change_the_listeners(kit) -> None:
    config = kit.config()
    two = dataclasses.replace(
        config,
        listeners=(*config.listeners, Listener(host="192.0.2.1", port=8081, upstream="default")),
    )
    pb = Playbook(config)
    with pytest.raises(UsageError, match="listeners"):
        pb.core.handle(ConfigReloaded(config=two), 0.0)
