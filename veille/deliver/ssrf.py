"""Where the hub may send HTTP requests: SSRF guard for webhook and Open311 destinations.

An agency's webhook URL is written by people outside the hub's operators (or leaked to them): a
URL naming the hub's own network (``http://10.0.0.7:8123/`` the store, ``http://169.254.169.254/``
a cloud's metadata service, ``http://localhost:9092``) would make the deliverer a proxy into it.
So a destination is refused unless:

* its scheme is http or https, it names a host, and it carries no user:password;
* every address its host resolves to is globally routable: not private (RFC 1918, ULA), loopback,
  link-local, multicast, reserved, unspecified or shared (CGNAT); IPv4 inside IPv6 (mapped,
  6to4, Teredo) is judged as the IPv4 address it carries;
* or the address is in a network the deployment allows (``VEILLE_DELIVERY_ALLOWED_NETWORKS``,
  for the tests and the demo's local receivers).

The check is made where the connection is made: :func:`guarded_session` resolves names with
:class:`GuardedResolver`, so the address checked is the address connected to (a name that
resolves to a public address when checked and to 127.0.0.1 when used gets nowhere). Literal
addresses, which aiohttp does not resolve, are checked by :func:`check_url` before the request;
redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from veille.deliver.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(ValueError):
    """A destination the hub must not send to; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_destination(url: str) -> URL:
    """The URL if its form is acceptable (http/https, a host, no credentials), else refused."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise DestinationRefused("bad_url", f"{url!r} is not a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise DestinationRefused("scheme", f"{_safe(parsed)}: only http and https destinations are "
                                 f"allowed, not {parsed.scheme or 'a relative URL'!r}")
    if not parsed.host:
        raise DestinationRefused("bad_url", f"{_safe(parsed)}: the URL names no host")
    if parsed.user is not None or parsed.password is not None:
        raise DestinationRefused("credentials", f"{_safe(parsed)}: credentials in a URL end up in "
                                 "logs; give the secret in the agency's secret (file or env)")
    return parsed


def _safe(url: URL) -> str:
    """The URL without user:password and query (neither belongs in an error message)."""
    try:
        return str(url.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "<URL>"


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return None


def address_kind(ip: Address) -> str | None:
    """Why ``ip`` is not a destination (``"loopback"``, ``"private"``...), None if it is one."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return address_kind(inner)
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if flag:
            return kind
    if not ip.is_global:  # shared address space (100.64.0.0/10) and the like
        return "not globally routable"
    return None


def check_address(ip: Address | str, allowed: Sequence[Network] = (), *, host: str = "") -> None:
    """Refuse ``ip`` unless it is globally routable or inside an allowed network."""
    address = ipaddress.ip_address(ip.split("%", 1)[0]) if isinstance(ip, str) else ip
    kind = address_kind(address)
    if kind is None or any(address in net for net in allowed if net.version == address.version):
        return
    named = f"{host} resolves to {address}" if host and host != str(address) else str(address)
    raise DestinationRefused(
        "forbidden_address",
        f"{named}, a {kind} address: refused, the hub does not send requests into private or "
        "local networks (SSRF). A test or demo may allow it with VEILLE_DELIVERY_ALLOWED_NETWORKS.")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def check_url(url: str, allowed: Sequence[Network] = (), *, resolve: bool = True) -> URL:
    """Check a destination before use: its form, and each address its host has (resolved now
    unless ``resolve`` is false: then only a literal address is checked)."""
    parsed = parse_destination(url)
    host = parsed.raw_host or ""
    literal = _literal(host)
    if literal is not None:
        check_address(literal, allowed)
    elif resolve:
        await GuardedResolver(allowed).resolve(host, parsed.port or 0)
    return parsed


class GuardedResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing names with an address the policy forbids."""

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self.allowed = tuple(allowed)
        self._inner: ThreadedResolver | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        # A name that does not resolve raises OSError: a transient failure, retried.
        results = await self._inner.resolve(host, port, family)
        for result in results:  # every address: the connector may try any of them
            check_address(result["host"], self.allowed, host=host)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_session(allowed: Sequence[Network] = (), timeout_seconds: float = 10.0) -> aiohttp.ClientSession:
    """An HTTP session whose connections go only where the policy allows (no proxy from the
    environment, no cookies kept between destinations)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), limit_per_host=8)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                                 trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

