"""A route's header edits, end to end: a real client, a real backend, every adapter."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from backend import Backend
from conftest import RunningProxy, proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_route_sets_adds_and_removes_request_and_response_fields(
    start_proxy: Callable[..., RunningProxy], backend: Backend
) -> None:
    route = {
        "path_prefix": "/",
        "upstream": "app",
        "request_headers": {
            "set": {"X-Real-IP": "{client_ip}", "X-Seen-Host": "{scheme}://{host}"},
            "add": {"X-Tag": "edge"},
            "remove": ["Cookie"],
        },
        "response_headers": {
            "set": {"X-Frame-Options": "DENY"},
            "add": {"Set-Cookie": "edge=1; Path=/"},
            "remove": ["X-Backend-Conn"],
        },
    }
    config = proxy_config(backend.url, routes=[route])
    config["listeners"][0].pop("upstream")
    proxy = start_proxy(config)
    with httpx.Client(base_url=proxy.url, timeout=10, trust_env=False) as client:
        response = client.get(
            "/headers",
            headers={"Cookie": "secret=1", "X-Real-IP": "6.6.6.6", "Host": "shop.example"},
        )
    assert response.status_code == 200
    seen = response.json()["headers"]
    names = [name for name, _ in seen]
    assert dict(seen)["x-real-ip"] == "127.0.0.1"  # the client's claim was replaced
    assert names.count("x-real-ip") == 1
    assert dict(seen)["x-seen-host"] == "http://shop.example"
    assert dict(seen)["x-tag"] == "edge"
    assert "cookie" not in names
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["set-cookie"] == "edge=1; Path=/"
    assert "x-backend-conn" not in response.headers
