"""IP rules (CONTRACT section 8): who the client is, and whether its address may pass.

Two pieces, as uvicorn's ProxyHeadersMiddleware splits them: the trust decision is one pure
function (`client_address`) and the stage around it only feeds it the request.

**The client address** is the socket peer (server) or the function URL's `sourceIp` (Lambda), an
IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`, a dual-stack listener) taken as its IPv4 address. A
client header never changes it, unless `trusted_proxies` names the peer: then `X-Forwarded-For`
is read right to left (each proxy appends the address it received the request from), skipping
entries that are themselves trusted proxies, and the first untrusted entry is the client. Entries
to the left of it were written by the client or by hops nobody vouches for, so they never count.
`X-Real-IP` and `Forwarded` never count at all (one header, one rule).

The entry forms read are what proxies write: `1.2.3.4`, `2001:db8::1`, and with a port
`1.2.3.4:5678`, `[2001:db8::1]:443` (or `[2001:db8::1]`); empty list elements are skipped
(RFC 9110 section 5.6.1). Anything else (`unknown`, a host name, garbage) stops the walk: what lies
beyond it cannot be read, so the client is the last trusted hop seen, the nearest address the
chain vouches for, never the unreadable entry. When every entry is trusted, the left-most is the
client. Addresses come back normalised (`ipaddress`'s text form), so one client has one spelling
for the rules and for rate-limit buckets.

**The rules**: `allow` and `deny`, each a list of CIDR networks or single addresses, IPv4 and
IPv6. Deny wins; with an `allow` list (even an empty one, which admits nobody) only its members
pass. A network with host bits set (`10.0.0.1/8`) is refused at construction, naming the network
it would mean, rather than guessed at: `allow: [192.168.1.10/24]` may mean the host or the subnet.
An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is read as its IPv4 network, since addresses
are matched as IPv4. An address that cannot be parsed (no peer at all, a Unix socket) is refused
when an allow list exists (it cannot be shown to be a member) and otherwise passes (no deny entry
can name it).

Matching: networks are collapsed (`ipaddress.collapse_addresses`) into sorted, disjoint ranges per
IP version, so a lookup is one `bisect`: O(log n) in the number of networks, one integer compare.
CloudFront's ~150 origin-facing ranges as `trusted_proxies` cost what three networks do. Parsing
an address text is the larger cost (`ipaddress` takes a few µs), so the texts seen last (a bounded
LRU of 4,096 per kind: a client's address, an X-Forwarded-For entry) are parsed once.

A refused request gets 403 "Your address is not allowed": the answer does not echo the address
(the request log has it).
"""

from __future__ import annotations

import functools
import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeVar

from ..exceptions import Refusal
from ..http.context import RequestContext

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
_N = TypeVar("_N", IPv4Network, IPv6Network)

_MAPPED = IPv6Network("::ffff:0:0/96")


def plain_address(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as its IPv4 address; any other unchanged."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def parse_address(text: str | None) -> Address | None:
    """A bare address (no port), IPv4-mapped IPv6 as IPv4, or None when `text` is not one."""
    if not text:
        return None
    try:
        return plain_address(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_network(text: str) -> Network:
    """A CIDR network or single address; ValueError naming `text` when it is neither."""
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not value:
        raise ValueError(f"{text!r} is not an IP address or CIDR network")
    try:
        network: Network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "host bits set" not in str(exc):
            raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
        meant = ipaddress.ip_network(value, strict=False)
        host = value.partition("/")[0]
        raise ValueError(
            f"{text!r} has host bits set: write the network {meant} or the single address {host}"
        ) from None
    if isinstance(network, IPv6Network) and network.subnet_of(_MAPPED):
        first = int(network.network_address) & 0xFFFFFFFF
        return IPv4Network((first, network.prefixlen - 96))
    return network


class _Ranges:
    """Disjoint, sorted address ranges of one IP version: membership by one bisect."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, networks: Iterable[_N]) -> None:
        collapsed = list(ipaddress.collapse_addresses(networks))
        self._starts = [int(network.network_address) for network in collapsed]
        self._ends = [int(network.broadcast_address) for network in collapsed]

    def __contains__(self, value: int) -> bool:
        index = bisect_right(self._starts, value) - 1
        return index >= 0 and value <= self._ends[index]

    def __bool__(self) -> bool:
        return bool(self._starts)


class NetworkSet:
    """A set of IPv4 and IPv6 networks, asked whether it holds an address."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[Network]) -> None:
        listed = list(networks)
        self._v4 = _Ranges([network for network in listed if isinstance(network, IPv4Network)])
        self._v6 = _Ranges([network for network in listed if isinstance(network, IPv6Network)])

    @classmethod
    def parse(cls, entries: Sequence[str]) -> NetworkSet:
        """ValueError naming the first entry that is not a network or address."""
        if isinstance(entries, str):
            raise ValueError(f"expected a list of CIDR networks, got the string {entries!r}")
        return cls(parse_network(entry) for entry in entries)

    def __contains__(self, address: Address) -> bool:
        return int(address) in (self._v4 if address.version == 4 else self._v6)

    def __bool__(self) -> bool:
        return bool(self._v4) or bool(self._v6)


@functools.lru_cache(maxsize=4096)
def forwarded_entry(text: str) -> Address | None:
    """One X-Forwarded-For element as an address (a port dropped), or None when it is not one."""
    value = text.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        end = value.find("]")
        port = value[end + 1 :]
        if end < 0 or (port and not (port[0] == ":" and _is_port(port[1:]))):
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # v4:port (an IPv6 address has at least two colons)
        value, _, port = value.partition(":")
        if not _is_port(port):
            return None
    return parse_address(value)


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str],
    trusted: Sequence[Network] | NetworkSet,
) -> str | None:
    """The address the guards judge: the peer, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For entry that is not itself one (see the module docstring for the details).

    `forwarded_for` holds the X-Forwarded-For header values in the order received, each possibly
    a comma-separated list; None when there is no peer.
    """
    networks = trusted if isinstance(trusted, NetworkSet) else NetworkSet(trusted)
    hop = parse_address(peer)
    if hop is None:
        return peer
    if not forwarded_for or hop not in networks:
        return str(hop)
    for value in reversed(forwarded_for):
        for entry in reversed(value.split(",")):
            if not entry.strip():
                continue  # an empty list element (RFC 9110 section 5.6.1)
            address = forwarded_entry(entry)
            if address is None:
                return str(hop)  # unreadable: the last trusted hop is as far as the chain vouches
            if address not in networks:
                return str(address)
            hop = address
    return str(hop)  # every entry is a trusted proxy: the left-most


class ClientAddressStage:
    """Sets `ctx.client_address` from the peer and X-Forwarded-For, through `trusted` proxies.

    Never refuses. Without an X-Forwarded-For header the address stays the peer the context
    already holds (no parsing at all).
    """

    def __init__(self, trusted: Sequence[str]) -> None:
        self._trusted = NetworkSet.parse(trusted)

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        forwarded = [value for name, value in ctx.headers if name == "x-forwarded-for"]
        if forwarded:
            ctx.client_address = client_address(ctx.client, forwarded, self._trusted)
        return None


def admits(address: Address | None, allow: NetworkSet | None, deny: NetworkSet) -> bool:
    """Whether `address` passes: not denied and, with an allow list, allowed. None (unparsable)
    passes only without an allow list."""
    if address is None:
        return allow is None
    if address in deny:
        return False
    return allow is None or address in allow


class IpRulesGuard:
    """403 for an address the rules refuse (deny wins; an allow list is exclusive)."""

    def __init__(self, *, allow: Sequence[str] | None, deny: Sequence[str] | None) -> None:
        self._allow = None if allow is None else _parsed("allow", allow)
        self._deny = _parsed("deny", deny or ())

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if admits(parse_address(ctx.client_address), self._allow, self._deny):
            return None
        return Refusal(403, "Your address is not allowed", log_error="ip refused")


def _parsed(field: str, entries: Sequence[str]) -> NetworkSet:
    try:
        return NetworkSet.parse(entries)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
