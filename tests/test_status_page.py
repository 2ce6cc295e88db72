"""The status page (`GET /status`, CONTRACT section 11), driven in headless Chromium (Debian's
`chromium`, through Playwright; nothing is downloaded) against a real router and real loopback
backends: sign in, watch a backend turn unhealthy, reset an open circuit, flip a priority and see
the next request go to the new first provider, a backend named like HTML shown as text with no
script run, no CSP violation in the console, screenshots at 1280 px and 390 px (docs/). And the
page's answers and headers, under `serve` and through the Lambda handler.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from support import Backend, Reply, RouterServer, Seen, function_url_event, write_config

KEY = "status-page-test-key"
XSS = "<img src=x onerror=alert(1)>"
DOCS = Path(__file__).resolve().parent.parent / "docs"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
WAIT_MS = 15_000


class Switchable:
    """A backend whose health endpoint and proxied answers can be switched between good and bad."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = 200
        self.status = 200
        self.lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        if seen.target.startswith("/health"):
            return Reply(status=self.health, body=b"{}")
        return Reply(status=self.status, body=json.dumps({"served_by": self.name}).encode())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (apt-get install chromium); this test is never skipped"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


class Watched:
    """A page with every dialog, console message and page error recorded."""

    def __init__(self, browser: Browser, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []

        def dialog(d: Dialog) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def console(message: ConsoleMessage) -> None:
            self.console.append(f"{message.type}: {message.text}")

        self.page.on("dialog", dialog)
        self.page.on("console", console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append((request.url, request.headers)))

    def sign_in(self, url: str, key: str = KEY) -> None:
        page = self.page
        page.goto(f"{url}/status")
        page.get_by_label("Admin key").fill(key)
        page.get_by_role("button", name="Sign in").click()

    def backend_field(self, backend_id: str, kind: str) -> Any:
        return self.page.locator(f'article[data-backend="{backend_id}"] .{kind}')

    def wait_text(self, locator: Any, text: str) -> None:
        locator.filter(has_text=re.compile(rf"^{re.escape(text)}$")).first.wait_for(timeout=WAIT_MS)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        assert self.errors == [], f"the page's script failed: {self.errors}"
        violations = [m for m in self.console if "content security policy" in m.lower()]
        assert violations == [], violations
        for url, headers in self.requests:
            assert KEY not in url, f"the admin key went into a URL: {url}"
            assert "cookie" not in {name.lower() for name in headers}
        assert self.context.cookies() == []

    def close(self) -> None:
        self.context.close()


def test_status_page_and_assets_answer_with_a_strict_policy_and_hold_no_data(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        with RouterServer(source, {"ADMIN_KEY": KEY}) as router, router.client() as client:
            types = {
                "/status": "text/html",
                "/status/status.js": "text/javascript",
                "/status/status.css": "text/css",
            }
            for path, media in types.items():
                answer = client.get(path)
                assert answer.status_code == 200, path
                assert answer.headers["content-type"].startswith(media)
                assert answer.headers["content-security-policy"] == CSP
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["cache-control"] == "no-store"
                assert answer.headers["referrer-policy"] == "no-referrer"
                assert backend.url not in answer.text  # nothing of the config is in the page or its assets
            html = client.get("/status").text
            assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/status/status.js" defer>']
            assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
            assert "innerHTML" not in client.get("/status/status.js").text
            assert client.get("/admin/status").status_code == 401
            assert client.get("/admin/status", headers={"X-Admin-Key": "wrong"}).status_code == 401
            data = client.get("/admin/status", headers={"X-Admin-Key": KEY}).json()
            assert data["routes"][0]["prefix"] == "/api"
            assert data["routes"][0]["candidates"][0]["backend"] == backend.url
            assert {"1m", "5m", "1h"} <= set(data["metrics"])
            assert backend.seen == []  # describing the routes sends nothing


def test_status_page_through_the_lambda_handler(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        handler = lambda_adapter(source, ADMIN_KEY=KEY)
        for path, media in (("/status", "text/html"), ("/status/status.js", "text/javascript")):
            answer = handler(function_url_event("GET", path), None)
            assert answer["statusCode"] == 200, answer
            headers = {name.lower(): value for name, value in answer["headers"].items()}
            assert headers["content-type"].startswith(media)
            assert headers["content-security-policy"] == CSP
            assert headers["x-content-type-options"] == "nosniff"
        admin = handler(function_url_event("GET", "/admin/status", headers={"X-Admin-Key": KEY}), None)
        assert admin["statusCode"] == 200
        assert json.loads(admin["body"])["routes"][0]["prefix"] == "/api"
        assert handler(function_url_event("GET", "/admin/status"), None)["statusCode"] == 401
        assert backend.seen == []


def test_operator_watches_health_resets_a_circuit_and_sees_names_as_text(
    tmp_path: Path, browser: Browser
) -> None:
    one, two = Switchable("one"), Switchable("two")
    with Backend(one) as first, Backend(two) as second:
        document = {
            "backends": {"one": {"url": first.url, "name": XSS}, "two": {"url": second.url}},
            "health_checks": {"interval_s": 0.3, "healthy_threshold": 1, "unhealthy_threshold": 2},
            "routes": [
                {"prefix": "/pool", "targets": ["one", "two"]},
                {"prefix": f"/{XSS}", "target": "two"},
            ],
        }
        source = write_config(tmp_path / "c.json", document)
        with RouterServer(source, {"ADMIN_KEY": KEY}) as router, router.client() as client:
            watched = Watched(browser)
            page = watched.page
            try:
                watched.sign_in(router.url)
                assert page.evaluate("sessionStorage.getItem('edge-router.admin-key')") == KEY
                watched.wait_text(watched.backend_field("one", "health"), "healthy")
                watched.wait_text(watched.backend_field("two", "health"), "healthy")

                # the names are shown as text: no element made of them, no script run
                assert page.locator(".backend-id", has_text="one").count() == 1
                page.locator(f'article[data-backend="one"] dd:text-is("{XSS}")').wait_for()
                page.locator(f'.route-name:text-is("/{XSS}")').wait_for()
                assert page.locator("main img").count() == 0

                # a circuit opened by failures, then closed from the page
                one.status = 500
                for _ in range(6):
                    assert client.get("/pool/x").json() == {"served_by": "two"}
                watched.wait_text(watched.backend_field("one", "circuit"), "OPEN")
                # the failed attempts are listed under Recent errors, as text
                page.locator("#errors li", has_text="GET /pool/x").first.wait_for(timeout=WAIT_MS)
                page.get_by_role("button", name="Reset circuit of one").click()
                page.locator("#action-msg", has_text="Circuit of one is CLOSED.").wait_for()
                status = client.get("/admin/circuit-breaker-status?backend=one", headers={"X-Admin-Key": KEY})
                assert status.json()["circuits"][0]["state"] == "CLOSED"
                watched.wait_text(watched.backend_field("one", "circuit"), "CLOSED")
                one.status = 200

                # the health endpoint fails: the page shows the backend unhealthy
                one.health = 503
                watched.wait_text(watched.backend_field("one", "health"), "unhealthy")
                page.locator('article[data-backend="one"] dd', has_text="status 503").wait_for()

                # traffic: the pool's chart has bars for 1m, 5m and 1h
                for _ in range(3):
                    client.get("/pool/y")
                chart = page.locator("svg[aria-label^='Requests per minute for /pool']")
                chart.locator("text", has_text="1h").wait_for()
                assert chart.locator("rect.bar").count() == 3
                page.locator("#traffic td", has_text="ms").first.wait_for()

                # the router cannot be reached: a banner says so; it goes when the router answers again
                page.route("**/admin/status", lambda route: route.abort())
                page.get_by_role("alert").filter(has_text="Cannot reach the router").wait_for()
                page.unroute("**/admin/status")
                page.locator("#banner").wait_for(state="hidden")

                DOCS.mkdir(exist_ok=True)
                page.screenshot(path=str(DOCS / "status-1280.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})
                page.locator("#updated").wait_for()
                assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no horizontal scroll
                page.screenshot(path=str(DOCS / "status-390.png"), full_page=True)

                page.get_by_role("button", name="Sign out").click()
                page.get_by_label("Admin key").wait_for()
                assert page.evaluate("sessionStorage.getItem('edge-router.admin-key')") is None
                watched.assert_clean()
            finally:
                watched.close()


def test_operator_flips_a_priority_flushes_and_invalidates_from_the_page(
    tmp_path: Path, browser: Browser
) -> None:
    one, two = Switchable("one"), Switchable("two")
    with Backend(one) as first, Backend(two) as second:
        document = {
            "providers": {"1": first.url, "2": second.url},
            "global_priority": "12",
            "routes": {"app": {"priority": "12"}},
        }
        source = write_config(tmp_path / "priority.json", document)
        with RouterServer(source, {"ADMIN_KEY": KEY}) as router, router.client() as client:
            assert client.get("/app/x").json() == {"served_by": "one"}
            watched = Watched(browser, width=390)
            page = watched.page
            try:
                watched.sign_in(router.url, KEY)
                page.locator(".route-name", has_text="app").first.wait_for()

                page.get_by_label("App", exact=True).fill("app")
                page.get_by_label("Priority", exact=True).fill("19")
                page.get_by_role("button", name="Flip priority").click()
                refused = page.locator("#action-msg.err")
                refused.wait_for()
                assert "422" in refused.inner_text()
                assert client.get("/app/x").json() == {"served_by": "one"}

                page.get_by_label("Priority", exact=True).fill("21")
                page.get_by_role("button", name="Flip priority").click()
                page.locator("#action-msg", has_text="Flipped app to 21").wait_for()
                assert client.get("/app/x").json() == {"served_by": "two"}
                assert json.loads(Path(source).read_text())["routes"]["app"]["priority"] == "21"
                # the routes panel shows the new try order
                first_candidate = page.locator(".route-name:text-is('/app') ~ ol li").first
                first_candidate.filter(has_text=f"{second.url} \u2192 {second.url}/app").wait_for()

                page.get_by_role("button", name="Flush config").click()
                page.locator("#action-msg", has_text="Config read again").wait_for()
                page.get_by_label("Cache prefix").fill("GET::")
                page.get_by_role("button", name="Invalidate cache prefix").click()
                page.locator("#action-msg", has_text="cached answers dropped").wait_for()

                # a wrong key is refused and the form comes back
                page.evaluate("sessionStorage.setItem('edge-router.admin-key', 'wrong')")
                page.get_by_label("Admin key").wait_for()
                page.locator("#login-msg", has_text="refused").wait_for()
                watched.assert_clean()
            finally:
                watched.close()


def test_admin_status_needs_the_key_and_redacts_credentials(tmp_path: Path) -> None:
    with Backend() as backend:
        url = backend.url.replace("http://", "http://user:secret@")
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": url}]})
        with RouterServer(source, {"ADMIN_KEY": KEY}) as router, router.client() as client:
            assert client.get("/admin/status").status_code == 401
            text = client.get("/admin/status", headers={"X-Admin-Key": KEY}).text
            assert "secret" not in text
            assert httpx.Response(200, text=text).json()["backends"]
        with Backend() as dead_end:
            pass  # closed: a connection to it is refused
        broken = dead_end.url.replace("http://", "http://user:secret@")
        source = write_config(tmp_path / "d.json", {"routes": [{"prefix": "/api", "target": broken}]})
        with RouterServer(source, {"ADMIN_KEY": KEY}) as router, router.client() as client:
            assert client.get("/api/x").status_code >= 500
            answer = client.get("/admin/status", headers={"X-Admin-Key": KEY})
            assert answer.json()["recent_errors"][0]["path"] == "/api/x"
            assert "secret" not in answer.text
