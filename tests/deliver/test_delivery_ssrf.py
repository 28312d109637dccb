"""The SSRF guard: destinations in private or local networks are refused unless allowed,
checked where the connection is made (literal addresses and names that resolve there)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from aiohttp import web
from deliver_helpers import serve

from veille.deliver.settings import parse_networks
from veille.deliver.ssrf import (
    DestinationRefused,
    address_kind,
    check_address,
    check_url,
    guarded_session,
    parse_destination,
)

LOCAL = parse_networks("127.0.0.0/8,::1/128")


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.0.0.7", "private"), ("172.16.4.2", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.251", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "private"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "not globally routable"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("93.184.215.14", None), ("2a00:1450:4007:80f::200e", None),
])
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("url", ["http://127.0.0.1:8123/", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]:9092/", "https://[::ffff:7f00:1]/", "http://0.0.0.0:80/"])
def test_literal_addresses_are_refused_with_a_clear_message(url: str) -> None:
    with pytest.raises(DestinationRefused) as err:
        asyncio.run(check_url(url))
    assert err.value.reason == "forbidden_address"
    assert "refused, the hub does not send requests into private or local networks (SSRF)" in str(err.value)
    assert "VEILLE_DELIVERY_ALLOWED_NETWORKS" in str(err.value)


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(DestinationRefused) as err:
        asyncio.run(check_url("http://localhost:8080/hook"))
    assert "localhost resolves to" in str(err.value) and "loopback address" in str(err.value)
    # A decimal IPv4 is not a literal for URL parsers, but resolves to 127.0.0.1.
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1, a loopback address"):
        asyncio.run(check_url("http://2130706433/"))


def test_the_allow_list_lets_local_receivers_through() -> None:
    assert asyncio.run(check_url("http://localhost:8080/hook", LOCAL)).host == "localhost"
    asyncio.run(check_url("http://127.0.0.1:8080/", LOCAL))
    asyncio.run(check_url("http://[::1]:8080/", LOCAL))
    with pytest.raises(DestinationRefused):  # allowed loopback, not the private ranges
        asyncio.run(check_url("http://10.0.0.1/", LOCAL))
    check_address("10.20.30.40", parse_networks("10.20.0.0/16"))


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///etc/passwd", "scheme"), ("gopher://x.fr/", "scheme"), ("//x.fr/h", "scheme"),
    ("http:///nohost", "bad_url"), ("https://user:pw@x.fr/", "credentials"),
])
def test_only_plain_http_urls(url: str, reason: str) -> None:
    with pytest.raises(DestinationRefused) as err:
        parse_destination(url)
    assert err.value.reason == reason
    assert "pw@" not in str(err.value)


def test_the_guarded_session_refuses_at_connection_time() -> None:
    """A receiver really listening on loopback: reached only when loopback is allowed."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="reached")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", ok)
        async with serve(app) as base:
            port = base.rsplit(":", 1)[1]
            async with guarded_session(()) as session:
                with pytest.raises(DestinationRefused, match="localhost resolves to"):
                    await session.get(f"http://localhost:{port}/")
            async with guarded_session(LOCAL) as session, session.get(f"http://localhost:{port}/") as resp:
                assert await resp.text() == "reached"

    asyncio.run(main())
