"""Who may scrape /metrics: clients on an allowed network, and, when a token is set, only with it.

    PORTICO_METRICS_ALLOW   networks (CIDRs) a scrape may come from; default loopback, RFC 1918, ::1 and fc00::/7
    PORTICO_METRICS_TOKEN   if set, also `Authorization: Bearer <token>`: both must hold

A token does not open /metrics to the internet by itself: a scraper outside
the default networks needs its network added too (0.0.0.0/0 and ::/0 for any).
Behind a proxy the address is the one uvicorn takes from X-Forwarded-For when
the proxy is trusted (FORWARDED_ALLOW_IPS), else the proxy's own.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOW = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")

Verdict = Literal["ok", "network", "token"]


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDRs; a bad one raises ValueError naming it."""
    parsed = []
    for value in values:
        try:
            parsed.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network (CIDR): {value!r}") from None
    return tuple(parsed)


@dataclass(frozen=True)
class ScrapeAccess:
    allow: tuple[Network, ...]
    token: str = ""

    def check(self, address: str | None, authorization: str) -> Verdict:
        """ok, or why the scrape is refused: its address (403) or its token (401)."""
        if not self._allowed(address):
            return "network"
        if self.token:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return "token"
        return "ok"

    def _allowed(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
        return any(ip.version == network.version and ip in network for network in self.allow)
