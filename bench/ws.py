"""WebSocket passthrough (issue 16): echo round trips direct vs through the router, and a thousand
idle WebSockets held open through it while its memory is watched.

    .venv/bin/python bench/run.py --only websocket [--quick]

The backend is `bench/_ws_backend.py` (a raw uvloop echo server); the router is `edge-router serve`
with one route, `/ws` -> the backend's http:// URL, so the upgrade goes through the router's normal
routing and the bytes after the 101 are spliced (nothing parses frames there). The client here is a
blocking-socket RFC 6455 client: frames masked in advance, so its cost per round trip is a
`sendall` and a `recv` or two, the same for both paths.

1. Round trips: one WebSocket straight to the backend, one through the router and, when nginx is
   installed, one through nginx (1 worker, Upgrade and Connection passed on: the reference), each
   sending a 32-byte text message and waiting for its echo, `ROUND_TRIPS` times, in `BLOCKS`
   blocks whose order alternates (so drift hits all alike) after a warm-up. Per-round-trip p50/p99
   and the added p50.
2. Idle: `IDLE` WebSockets opened through the router one after the other and held `HOLD_S`
   seconds; the router's VmRSS (with any workers it forked) before, once open, every second while
   held; then one echo on each (still spliced), a clean close of each (close frame 1000 echoed,
   then EOF), and the backend's count of open WebSockets once they are closed (the router must
   have closed its side too).

A router that does not upgrade yet (no 101 through it) gets a row that says so, and the section
measures the direct path alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import socket
import time
from typing import Any

from _common import BENCH_DIR, LOOPBACK, free_port, router_config, summarize, tree_kib, wait_http, write_json
from _failover import start_port_child
from _ws_backend import GUID, unmask

ROUND_TRIPS = 10_000
BLOCKS = 5
WARMUP = 500
IDLE = 1_000
HOLD_S = 5.0
MESSAGE_BYTES = 32
TIMEOUT_S = 5.0  # every socket operation
FLAT_MIB = 1.0  # RSS growth while held that still counts as flat
PREFIX = "/ws"
TEXT, CLOSE = 0x1, 0x8


class WsError(Exception):
    """The peer broke the protocol, or closed, where the bench expected a frame."""


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final client frame (RFC 6455 section 5.3: every client frame is masked)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + unmask(payload, mask)


class WsClient:
    """A blocking WebSocket client on one loopback socket; every wait bounded by `TIMEOUT_S`."""

    def __init__(self, port: int, path: str) -> None:
        self.path = path
        self.sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def handshake(self) -> int:
        """Send the upgrade request; the answer's status (101 checked: Sec-WebSocket-Accept), or 0
        when the connection closed without a status line."""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            f"GET {self.path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk or len(self.buffer) > 65536:
                break
            self.buffer += chunk
        head, sep, self.buffer = self.buffer.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if not sep or len(parts) < 2 or not parts[1].isdigit():
            return 0
        status = int(parts[1])
        expected = base64.b64encode(hashlib.sha1(key + GUID).digest())  # RFC 6455
        accept = [
            line.partition(b":")[2].strip()
            for line in head.split(b"\r\n")[1:]
            if line.partition(b":")[0].strip().lower() == b"sec-websocket-accept"
        ]
        if status == 101 and accept != [expected]:
            raise WsError(f"101 with Sec-WebSocket-Accept {accept!r}, not [{expected!r}]")
        return status

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WsError("the connection closed mid-frame")
            self.buffer += chunk

    def recv_frame(self) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload); server frames are not masked."""
        self._fill(2)
        length, at = self.buffer[1] & 0x7F, 2
        if length == 126:
            self._fill(4)
            length, at = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            self._fill(10)
            length, at = int.from_bytes(self.buffer[2:10], "big"), 10
        self._fill(at + length)
        opcode, payload = self.buffer[0] & 0x0F, self.buffer[at : at + length]
        self.buffer = self.buffer[at + length :]
        return opcode, payload

    def echo(self, frame: bytes, payload: bytes) -> bool:
        self.sock.sendall(frame)
        opcode, answer = self.recv_frame()
        return opcode == TEXT and answer == payload

    def close(self) -> bool:
        """The closing handshake: close 1000 sent, the peer's close frame back, then EOF."""
        try:
            self.sock.sendall(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            for _ in range(100):  # frames still in flight may come before the close
                opcode, payload = self.recv_frame()
                if opcode == CLOSE:
                    break
            else:
                return False
            clean = payload[:2] == (1000).to_bytes(2, "big")
            return clean and self.sock.recv(1) == b""
        except (OSError, WsError):
            return False
        finally:
            self.sock.close()

    def abort(self) -> None:
        self.sock.close()


def messages(count: int = 64) -> list[tuple[bytes, bytes]]:
    """(masked frame, payload) pairs built before the clock starts: distinct small text messages."""
    out = []
    for i in range(count):
        payload = f"echo {i:04d} ".encode().ljust(MESSAGE_BYTES, b"x")
        out.append((client_frame(TEXT, payload), payload))
    return out


def round_trips(targets: dict[str, tuple[int, str]], n: int) -> dict[str, dict[str, Any]]:
    """`n` sequential echo round trips on one WebSocket per target, in alternating blocks; µs each."""
    clients = {name: WsClient(port, path) for name, (port, path) in targets.items()}
    try:
        for name, client in clients.items():
            status = client.handshake()
            if status != 101:
                raise WsError(f"{name}: the upgrade was answered {status or 'with a close'}")
        frames = messages()
        samples: dict[str, list[float]] = {name: [] for name in clients}
        wrong = dict.fromkeys(clients, 0)
        for client in clients.values():
            for i in range(WARMUP):
                client.echo(*frames[i % len(frames)])
        clock = time.perf_counter_ns
        order = list(clients)
        for block in range(BLOCKS):
            for name in order if block % 2 == 0 else order[::-1]:
                client, out = clients[name], samples[name]
                for i in range(n // BLOCKS):
                    frame, payload = frames[i % len(frames)]
                    started = clock()
                    ok = client.echo(frame, payload)
                    out.append((clock() - started) / 1000)
                    wrong[name] += not ok
        closed = {name: client.close() for name, client in clients.items()}
    finally:
        for client in clients.values():
            client.abort()
    return {
        name: {**summarize(values), "wrong_echoes": wrong[name], "closed_cleanly": closed[name]}
        for name, values in samples.items()
    }


def backend_open(port: int) -> int | None:
    """The backend's count of open WebSockets (GET /__stats), or None if it cannot say."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                if data.count(b"}"):
                    break
        open_now: int = json.loads(data.partition(b"\r\n\r\n")[2])["open"]
        return open_now
    except (OSError, ValueError, KeyError):
        return None


def settled_backend_open(port: int, deadline_s: float = 3.0) -> int | None:
    """`backend_open` polled until it is 0 or `deadline_s` passed (the router closes its side of a
    splice a moment after the client's close)."""
    deadline = time.monotonic() + deadline_s
    while True:
        count = backend_open(port)
        if count == 0 or time.monotonic() >= deadline:
            return count
        time.sleep(0.05)


def hold_idle(pid: int, port: int, count: int, hold_s: float) -> dict[str, Any]:
    """Open `count` WebSockets through the router on `port` (whose process is `pid`), hold them
    `hold_s` seconds reading its RSS each second, echo once on each, close each cleanly."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out: dict[str, Any] = {"wanted": count, "rss_before_kib": tree_kib(pid), "open_error": None}
    clients: list[WsClient] = []
    frame, payload = messages(1)[0]
    try:
        started = time.perf_counter()
        for _ in range(count):
            out["open_error"] = open_one(port, clients)
            if out["open_error"] is not None:
                break  # the first refusal ends the opening: the rest would wait on the same cause
        out["opened"] = len(clients)
        out["open_s"] = time.perf_counter() - started
        time.sleep(0.2)
        out["rss_open_kib"] = tree_kib(pid)
        held: list[int | None] = []
        for _ in range(round(hold_s)):
            time.sleep(1.0)
            held.append(tree_kib(pid))
        out["rss_held_kib"] = held
        out["echoed_after_hold"] = sum(echo_safely(client, frame, payload) for client in clients)
        out["closed_cleanly"] = sum(client.close() for client in clients)
    finally:
        for client in clients:
            client.abort()
    time.sleep(0.2)
    out["rss_closed_kib"] = tree_kib(pid)
    return out


def open_one(port: int, clients: list[WsClient]) -> str | None:
    """One more WebSocket through the router, appended to `clients`; None, or why it failed."""
    try:
        client = WsClient(port, PREFIX + "/idle")
    except OSError as exc:
        return f"connect: {exc!r}"
    try:
        status = client.handshake()
    except (OSError, WsError) as exc:
        client.abort()
        return f"handshake: {exc!r}"
    if status != 101:
        client.abort()
        return f"the upgrade was answered {status or 'with a close'}"
    clients.append(client)
    return None


def echo_safely(client: WsClient, frame: bytes, payload: bytes) -> bool:
    try:
        return client.echo(frame, payload)
    except (OSError, WsError):
        return False


def probe_upgrade(R: Any, port: int) -> int:
    """The status the router answers an upgrade request with (0: it closed, or the probe failed)."""
    try:
        probe = WsClient(port, PREFIX + "/probe")
    except OSError as exc:
        R.log(f"websocket: cannot connect to the router: {exc!r}")
        return 0
    try:
        status = probe.handshake()
    except (OSError, WsError) as exc:
        R.log(f"websocket: the upgrade probe through the router failed: {exc!r}")
        probe.abort()
        return 0
    if status == 101:
        probe.close()
    else:
        probe.abort()
    return status


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def run_websocket(bench: Any, R: Any) -> None:
    """The section; `R` is bench/run.py's module (router start-up, tables, checks)."""
    backend, port = start_port_child(
        bench.children, [bench.python, str(BENCH_DIR / "_ws_backend.py")], "the WebSocket echo backend"
    )
    router = nginx = None
    try:
        config = write_json(bench.tmp / "ws.json", router_config(f"http://{LOOPBACK}:{port}", PREFIX))
        router, router_port = R.start_router(bench, config, ready_path=PREFIX + "/", name="router-ws")
        status = probe_upgrade(R, router_port)
        upgrades = status == 101
        targets = {"direct": (port, "/echo")}
        if upgrades:
            targets["router"] = (router_port, PREFIX + "/echo")
        if R.nginx_binary():
            nginx, nginx_port = start_nginx_ws(bench, R, R.nginx_binary(), port)
            targets["nginx"] = (nginx_port, PREFIX + "/echo")
        R.log(f"websocket: {ROUND_TRIPS:,} echo round trips per path ({', '.join(targets)})")
        trips = round_trips(targets, ROUND_TRIPS)
        if nginx is not None:
            bench.children.stop(nginx)
            nginx = None
        idle = None
        if upgrades:
            R.log(f"websocket: {IDLE:,} idle WebSockets through the router, held {HOLD_S:g}s")
            idle = hold_idle(router.pid, router_port, IDLE, HOLD_S)
            idle["backend_open_after_close"] = settled_backend_open(port)
    finally:
        for proc in (nginx, router):
            if proc is not None:
                bench.children.stop(proc)
        bench.children.stop(backend)
    report(bench, R, status, trips, idle)


def start_nginx_ws(bench: Any, R: Any, binary: str, backend_port: int) -> tuple[Any, int]:
    """nginx (1 worker) proxying `PREFIX` to the echo backend with the Upgrade and Connection
    headers passed on, as nginx's WebSocket proxying is documented; a reference for the added p50."""
    port = free_port()
    prefix = bench.tmp / "nginx-ws"
    conf = R.write_nginx_conf(
        prefix,
        port,
        backend_port,
        location=PREFIX,
        # An empty proxy_set_header (the base config's Connection "") sends nothing; this one wins.
        directives="""proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";""",
    )
    proc = bench.children.start([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
    wait_http(port, PREFIX + "/", 10, proc)
    return proc, port


def report(
    bench: Any, R: Any, status: int, trips: dict[str, dict[str, Any]], idle: dict[str, Any] | None
) -> None:
    direct = trips["direct"]
    rows = [
        [
            name,
            f"{r['n']:,}",
            f"{r['p50_us']:.0f}",
            f"{r['p99_us']:.0f}",
            f"{r['mean_us']:.0f}",
            "-" if name == "direct" else f"{r['p50_us'] - direct['p50_us']:+.0f}",
            str(r["wrong_echoes"]),
            "yes" if r["closed_cleanly"] else "NO",
        ]
        for name, r in trips.items()
    ]
    answered = f"answered {status}" if status else "closed the connection"
    if "router" not in trips:
        rows.insert(1, ["router: does not upgrade yet", "-", "-", "-", "-", "-", "-", "-"])
    R.table(
        f"WebSocket  (echo backend bench/_ws_backend.py; one WebSocket per path, {MESSAGE_BYTES}-byte"
        f" text messages, sequential, {BLOCKS} alternating blocks; µs per round trip)",
        ["path", "round trips", "p50", "p99", "mean", "+p50 vs direct", "wrong echoes", "clean close"],
        rows,
    )
    bench.results["websocket"] = {"upgrade_status": status, "round_trips": trips, "idle": idle}
    if "router" not in trips:
        print(f"   router does not upgrade yet: the upgrade request through it was {answered}, not 101")
        bench.check("websocket: upgrade through the router", f"no ({answered})", "101", None)
        return
    router = trips["router"]
    added = router["p50_us"] - direct["p50_us"]
    nginx = f"; nginx adds {trips['nginx']['p50_us'] - direct['p50_us']:.0f} µs" if "nginx" in trips else ""
    print(
        f"   router added p50 per round trip: {added:.0f} µs"
        f" ({router['p50_us'] / direct['p50_us']:.2f}x direct){nginx}"
    )
    bench.check("websocket: added p50 per echo round trip", f"{added:.0f} µs", "", None)
    ok = router["wrong_echoes"] == 0 and router["closed_cleanly"] and router["n"] == ROUND_TRIPS
    bench.check(
        f"websocket: {ROUND_TRIPS:,} echoes through the router, all right, closed cleanly",
        f"{router['n'] - router['wrong_echoes']:,} right, close"
        + (" clean" if router["closed_cleanly"] else " NOT clean"),
        f"{ROUND_TRIPS:,}, clean",
        ok,
    )
    if idle is not None:
        report_idle(bench, R, idle)


def report_idle(bench: Any, R: Any, idle: dict[str, Any]) -> None:
    held = [k for k in idle["rss_held_kib"] if k is not None]
    opened, before, at_open = idle["opened"], idle["rss_before_kib"], idle["rss_open_kib"]
    rows = [
        ["before opening", mib(before), ""],
        [f"{opened:,} open ({idle['open_s']:.1f}s to open)", mib(at_open), _delta(at_open, before)],
        *[[f"held {i + 1}s", mib(k), _delta(k, at_open)] for i, k in enumerate(idle["rss_held_kib"])],
        ["all closed", mib(idle["rss_closed_kib"]), _delta(idle["rss_closed_kib"], at_open)],
    ]
    R.table(
        f"   {idle['wanted']:,} idle WebSockets through the router  (router VmRSS, process and workers)",
        ["moment", "router RSS", "change"],
        rows,
    )
    if idle["open_error"]:
        print(f"   opening stopped after {opened:,}: {idle['open_error']}")
    per = (at_open - before) / opened if opened and at_open and before else None
    print(
        f"   per open WebSocket: {'-' if per is None else f'{per:.1f} KiB'};"
        f" echoed after the hold: {idle['echoed_after_hold']:,}; closed cleanly: {idle['closed_cleanly']:,};"
        f" backend WebSockets still open after closing: {idle['backend_open_after_close']}"
    )
    growth = (max(held) - at_open) / 1024 if held and at_open else None
    flat = None if growth is None else growth <= FLAT_MIB
    bench.check(
        f"websocket: router RSS growth while {idle['wanted']:,} idle are held {HOLD_S:g}s",
        "-" if growth is None else f"{growth:+.2f} MiB",
        f"<= {FLAT_MIB:g} MiB",
        flat if opened == idle["wanted"] else False,
    )
    counts = (opened, idle["echoed_after_hold"], idle["closed_cleanly"])
    bench.check(
        "websocket: idle ones opened / echoing after the hold / closed cleanly",
        " / ".join(f"{c:,}" for c in counts),
        f"{idle['wanted']:,} each",
        all(c == idle["wanted"] for c in counts) and idle["backend_open_after_close"] == 0,
    )
    per_text = "-" if per is None else f"{per:.1f} KiB"
    bench.check("websocket: router RSS per open WebSocket", per_text, "", None)


def _delta(kib: int | None, base: int | None) -> str:
    return "-" if kib is None or base is None else f"{(kib - base) / 1024:+.2f} MiB"
