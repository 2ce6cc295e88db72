"""IP rules by table (CONTRACT section 8): who the client is, and whether its address may pass.

The client address is the socket peer unless `trusted_proxies` names the peer; then the right-most
X-Forwarded-For entry that is not itself a trusted proxy. Client headers (X-Forwarded-For from an
untrusted peer, X-Real-IP, Forwarded) never change it. Deny wins; an allow list is exclusive;
IPv4-mapped IPv6 addresses match IPv4 rules. A refusal is 403 and does not echo the address.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from edge_router.exceptions import Refusal
from edge_router.guards.base import Guard, run_guards
from edge_router.guards.ip_rules import ClientAddressStage, IpRulesGuard, client_address, parse_network
from edge_router.http.context import RequestContext
from support import run

# An ALB in the VPC (10/8) behind CloudFront (130.176/16 stands for its origin-facing ranges), and
# an IPv6 private range for proxies on a dual-stack network.
TRUSTED = [ipaddress.ip_network(cidr) for cidr in ("10.0.0.0/8", "130.176.0.0/16", "fd00::/8")]
ALB = "10.0.1.5"
CLOUDFRONT = "130.176.12.34"
CLIENT = "198.51.100.7"


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # an untrusted peer is the client, whatever it claims
        ("203.0.113.9", ["192.0.2.1"], "203.0.113.9"),
        ("203.0.113.9", [ALB], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # one trusted hop (an ALB)
        (ALB, [CLIENT], CLIENT),
        # CloudFront then an ALB: two trusted hops
        (ALB, [f"{CLIENT}, {CLOUDFRONT}"], CLIENT),
        # entries the client wrote itself, left of its real address, never count
        (ALB, [f"6.6.6.6, {CLIENT}, {CLOUDFRONT}"], CLIENT),
        (ALB, [f"10.9.9.9, {CLIENT}, {CLOUDFRONT}"], CLIENT),
        # several X-Forwarded-For fields are one list, in order
        (ALB, ["6.6.6.6", CLIENT, CLOUDFRONT], CLIENT),
        # every entry a trusted proxy: the left-most
        (ALB, [f"10.2.2.2, {CLOUDFRONT}"], "10.2.2.2"),
        # a trusted peer without X-Forwarded-For is the client
        (ALB, [], ALB),
        # an unreadable entry stops the walk at the last trusted hop
        (ALB, [f"{CLIENT}, unknown, {CLOUDFRONT}"], CLOUDFRONT),
        (ALB, [f"{CLIENT}, unknown"], ALB),
        (ALB, [f"{CLIENT}, client.example.com"], ALB),
        (ALB, [f"{CLIENT}:http, {CLOUDFRONT}"], CLOUDFRONT),
        # ports as proxies write them
        (ALB, [f"{CLIENT}:5678, {CLOUDFRONT}:443"], CLIENT),
        (ALB, ["[2001:db8::7]:443"], "2001:db8::7"),
        (ALB, ["[2001:db8::7]"], "2001:db8::7"),
        (ALB, ["[2001:db8::7]:x"], ALB),
        # empty list elements are skipped
        (ALB, [f"{CLIENT},, {CLOUDFRONT},"], CLIENT),
        # IPv6 proxies, and one spelling per address
        ("fd00::1", ["2001:DB8:0::7"], "2001:db8::7"),
        ("fd00::1", [f"{CLIENT}, fd00::2"], CLIENT),
        # IPv4-mapped IPv6, as the peer and as an entry, is IPv4
        (f"::ffff:{ALB}", [CLIENT], CLIENT),
        (ALB, [f"::ffff:{CLIENT}"], CLIENT),
        ("::ffff:203.0.113.9", [CLIENT], "203.0.113.9"),
        # no peer at all
        (None, [CLIENT], None),
    ],
)
def test_client_address(peer: str | None, forwarded_for: list[str], expected: str | None) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == expected


def test_without_trusted_proxies_forwarding_headers_never_count() -> None:
    assert client_address("203.0.113.9", [CLIENT], []) == "203.0.113.9"
    assert client_address("10.0.0.1", [CLIENT], []) == "10.0.0.1"


def request(peer: str | None, *headers: tuple[str, str]) -> RequestContext:
    return RequestContext(
        method="GET",
        raw_path="/api/x",
        raw_headers=[(name.lower().encode(), value.encode()) for name, value in headers],
        client=peer,
    )


SPOOFS = (
    ("X-Forwarded-For", "192.0.2.1"),
    ("X-Real-IP", "192.0.2.1"),
    ("Forwarded", "for=192.0.2.1"),
    ("True-Client-IP", "192.0.2.1"),
)


@pytest.mark.parametrize("trusted", [None, ["10.0.0.0/8"]], ids=["no-trusted-proxies", "peer-untrusted"])
def test_spoofed_client_headers_do_not_pass_an_allow_list(trusted: list[str] | None) -> None:
    guards: list[Guard] = [IpRulesGuard(allow=["192.0.2.0/24"], deny=None)]
    if trusted is not None:
        guards.insert(0, ClientAddressStage(trusted))
    ctx = request("203.0.113.9", *SPOOFS)
    refusal = run(run_guards(guards, ctx))
    assert isinstance(refusal, Refusal)
    assert refusal.status == 403
    assert ctx.client_address == "203.0.113.9"


def test_spoofed_client_headers_do_not_escape_a_deny_list() -> None:
    guards = [ClientAddressStage(["10.0.0.0/8"]), IpRulesGuard(allow=None, deny=["203.0.113.0/24"])]
    refusal = run(run_guards(guards, request("203.0.113.9", *SPOOFS)))
    assert refusal is not None and refusal.status == 403


def test_x_real_ip_and_forwarded_never_count_even_from_a_trusted_proxy() -> None:
    ctx = request(ALB, ("X-Real-IP", "192.0.2.1"), ("Forwarded", "for=192.0.2.1"))
    guards = [ClientAddressStage(["10.0.0.0/8"]), IpRulesGuard(allow=["192.0.2.0/24"], deny=None)]
    refusal = run(run_guards(guards, ctx))
    assert refusal is not None and refusal.status == 403
    assert ctx.client_address == ALB


def test_a_client_behind_cloudfront_and_an_alb_is_judged_by_its_own_address() -> None:
    stage = ClientAddressStage(["10.0.0.0/8", "130.176.0.0/16"])
    allow = IpRulesGuard(allow=["198.51.100.0/24"], deny=None)
    deny = IpRulesGuard(allow=None, deny=["198.51.100.7"])
    passed = request(ALB, ("X-Forwarded-For", f"{CLIENT}, {CLOUDFRONT}"))
    assert run(run_guards([stage, allow], passed)) is None
    assert passed.client_address == CLIENT
    outsider = request(ALB, ("X-Forwarded-For", f"{CLIENT}, {CLOUDFRONT}"), ("X-Forwarded-For", "6.6.6.6"))
    assert run(run_guards([stage, allow], outsider)) is not None  # 6.6.6.6 came after CloudFront
    refused = run(run_guards([stage, deny], request(ALB, ("X-Forwarded-For", f"{CLIENT}, {CLOUDFRONT}"))))
    assert refused is not None and refused.status == 403


@pytest.mark.parametrize(
    ("allow", "deny", "address", "admitted"),
    [
        # deny list only
        (None, ["10.0.0.0/8"], "10.1.2.3", False),
        (None, ["10.0.0.0/8"], "192.0.2.1", True),
        # an allow list is exclusive
        (["192.0.2.0/24"], None, "192.0.2.5", True),
        (["192.0.2.0/24"], None, "198.51.100.1", False),
        ([], None, "192.0.2.5", False),
        # deny wins over allow
        (["10.0.0.0/8"], ["10.6.0.0/16"], "10.6.1.1", False),
        (["10.0.0.0/8"], ["10.6.0.0/16"], "10.7.1.1", True),
        # single addresses
        (None, ["192.0.2.7"], "192.0.2.7", False),
        (None, ["192.0.2.7"], "192.0.2.8", True),
        (["2001:db8::1"], None, "2001:db8::1", True),
        (["2001:db8::1"], None, "2001:db8::2", False),
        # IPv6 networks
        (["2001:db8::/32"], None, "2001:db8:ffff::5", True),
        (["2001:db8::/32"], None, "2001:db9::1", False),
        (["2001:db8::/32"], None, "192.0.2.1", False),  # an IPv4 client is not in an IPv6 allow list
        (["2001:db8::/32", "192.0.2.0/24"], ["2001:db8:bad::/48"], "2001:db8:bad::1", False),
        (["2001:db8::/32", "192.0.2.0/24"], ["2001:db8:bad::/48"], "192.0.2.9", True),
        # IPv4-mapped IPv6 clients match IPv4 rules, and mapped rules are IPv4 rules
        (["10.0.0.0/8"], None, "::ffff:10.0.0.1", True),
        (None, ["10.0.0.0/8"], "::ffff:10.0.0.1", False),
        (None, ["::ffff:10.0.0.0/104"], "10.0.0.1", False),
        # overlapping and adjacent networks
        (["10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16"], None, "10.200.0.1", True),
        (["10.0.0.0/9", "10.128.0.0/9"], None, "11.0.0.0", False),
        # an address that cannot be judged: refused by an allow list, passed by a deny list
        (["192.0.2.0/24"], None, None, False),
        (None, ["192.0.2.0/24"], None, True),
        (["192.0.2.0/24"], None, "/run/router.sock", False),
    ],
)
def test_ip_rules(
    allow: list[str] | None, deny: list[str] | None, address: str | None, admitted: bool
) -> None:
    refusal = run(IpRulesGuard(allow=allow, deny=deny).on_request(request(address)))
    if admitted:
        assert refusal is None
    else:
        assert refusal is not None
        assert (refusal.status, refusal.message) == (403, "Your address is not allowed")


def test_the_refusal_does_not_echo_the_address() -> None:
    refusal = run(IpRulesGuard(allow=None, deny=["203.0.113.0/24"]).on_request(request("203.0.113.9")))
    assert refusal is not None
    assert "203.0.113" not in refusal.message
    assert "203.0.113" not in repr(refusal.extra)


@pytest.mark.parametrize(
    ("allow", "deny", "named"),
    [
        (["10.0.0.1/8"], None, ["allow", "'10.0.0.1/8'", "10.0.0.0/8", "10.0.0.1"]),
        (None, ["192.0.2.0/24", "nonsense"], ["deny", "'nonsense'"]),
        (None, ["2001:db8::1/32"], ["deny", "2001:db8::/32"]),
        ([""], None, ["allow", "''"]),
        (["10.0.0.0/33"], None, ["allow", "'10.0.0.0/33'"]),
        ("10.0.0.0/8", None, ["allow", "'10.0.0.0/8'", "list"]),
    ],
)
def test_a_rule_that_is_not_a_network_is_refused_naming_it(
    allow: list[str] | None, deny: list[str] | None, named: list[str]
) -> None:
    with pytest.raises(ValueError) as refused:
        IpRulesGuard(allow=allow, deny=deny)
    for part in named:
        assert part in str(refused.value)


def test_trusted_proxies_that_are_not_networks_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.internal'"):
        ClientAddressStage(["10.0.0.0/8", "proxy.internal"])


def test_many_networks_match_as_a_plain_scan_would() -> None:
    # The rules are collapsed into sorted ranges and searched by bisection; the answer must be the
    # one a scan over every network gives, overlapping and nested networks included.
    rng = random.Random(12)
    cidrs = [
        f"{rng.randrange(1, 255)}.{rng.randrange(256)}.0.0/{rng.choice((8, 12, 16, 20, 24))}"
        for _ in range(150)
    ]
    cidrs += [f"2001:db8:{rng.randrange(65536):x}::/{rng.choice((32, 40, 48, 64))}" for _ in range(50)]
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
    guard = IpRulesGuard(allow=[str(network) for network in networks], deny=None)
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2400)
    ]
    addresses += [ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96)) for _ in range(600)]
    addresses += [network.network_address for network in networks] + [n.broadcast_address for n in networks]

    async def admitted() -> list[bool]:
        return [await guard.on_request(request(str(address))) is None for address in addresses]

    expected = [any(address in network for network in networks) for address in addresses]
    assert run(admitted()) == expected
    assert 0 < sum(expected) < len(expected)


def test_parse_network_reads_single_addresses_as_host_networks() -> None:
    assert str(parse_network(" 192.0.2.7 ")) == "192.0.2.7/32"
    assert str(parse_network("2001:db8::1")) == "2001:db8::1/128"
    assert str(parse_network("::ffff:192.0.2.0/120")) == "192.0.2.0/24"
