"""The client's address: the peer, unless the peer is a trusted proxy that says who the client is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


class TrustedNetworks:
    """The trusted proxy networks, with the verdict per address remembered (a bounded dict)."""

    __slots__ = ("_verdicts", "networks")

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._verdicts: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip: IPv4Address | IPv6Address = ip_address(address)
            except ValueError:
                verdict = False
            else:
                verdict = any(ip in network for network in self.networks)
            if len(self._verdicts) >= 1024:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict


def client_address(
    peer: str | None,
    headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]],
    trusted: TrustedNetworks | Sequence[Network],
) -> str | None:
    """Walk X-Forwarded-For (or Forwarded) from the right while the hop is trusted.

    The first untrusted hop is the client: anything left of it was written by
    the client itself and can be forged. ``headers``: lowercased names, as
    bytes (ASGI) or str.
    """
    if not isinstance(trusted, TrustedNetworks):
        trusted = TrustedNetworks(trusted)
    if peer is None or not trusted or not trusted.trusts(peer):
        return peer
    hops: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name.lower()
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if name == "x-forwarded-for":
            hops.extend(h.strip() for h in value.split(","))
        elif name == "forwarded" and not hops:
            hops.extend(_forwarded_for(value))
    for hop in reversed([h for h in hops if h]):
        if not trusted.trusts(hop):
            return hop if _valid(hop) else None
    return hops[0] if hops and _valid(hops[0]) else peer


def _forwarded_for(value: str) -> list[str]:
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.lower() == "for":
                val = val.strip('"')
                if val.startswith("["):  # [v6]:port
                    val = val[1:].split("]", 1)[0]
                elif val.count(":") == 1:  # v4:port
                    val = val.split(":", 1)[0]
                found.append(val)
    return found


def _valid(address: str) -> bool:
    try:
        ip_address(address)
    except ValueError:
        return False
    return True
