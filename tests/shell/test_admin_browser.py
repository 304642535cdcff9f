"""The admin page in a real headless browser (Debian's chromium driven by Playwright; never a
downloaded browser): it loads, a decision made through the proxy appears live, filters work, a row
opens the whole event, and a hostile path is shown as text (no markup, no script). Screenshots go
to the test's temporary directory."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.shell.test_admin import ADMIN, admin_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CONFIG = """
[permissions.p.network.domains]
"*" = "allow"
"**.denied.test" = "deny"
"""
HOSTILE = "/<img/src=x/onerror=window.__pwned=1>"
expect = None   # playwright's expect, set when the browser fixture imports playwright


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium with apt-get)")
    global expect
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")
    expect = sync_api.expect
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        # a persistent context is how a fresh --user-data-dir is given to Playwright's launcher
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS[1:], env={"HOME": str(profile)})
        yield context
        context.close()


def raw_get(proxy, target: str) -> bytes:
    """A request line exactly as written (a client like httpx would percent-encode ``<``)."""
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        host = target.split("/", 3)[2]
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return s.recv(4096)


def test_the_page_shows_decisions_live_filters_and_escapes(start_proxy, upstream, browser, tmp_path: Path):
    proxy = start_proxy(CONFIG, extra=ADMIN)
    url = admin_url(proxy)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    expect(page.locator("#status")).to_have_text("live", timeout=15000)
    assert page.title().startswith("policyproxy")
    page.screenshot(path=str(tmp_path / "loaded.png"))

    with httpx.Client(proxy=proxy.url, timeout=20) as c:   # a decision made after the page loaded
        assert c.get(f"http://tunnel.test:{upstream.plain_port}/browser-live").status_code == 200
    rows = page.locator("#rows tr")
    rows.filter(has_text="/browser-live").first.wait_for(timeout=10000)
    page.screenshot(path=str(tmp_path / "live.png"))

    assert raw_get(proxy, f"http://tunnel.test:{upstream.plain_port}{HOSTILE}").startswith(b"HTTP/1.1 ")
    rows.filter(has_text="onerror").first.wait_for(timeout=10000)
    assert page.locator("#rows img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert HOSTILE in page.locator("#rows").inner_text()

    page.select_option("#f-decision", "deny")
    page.click("#filters button[type=submit]")
    expect(page.locator("#status")).to_have_text("live", timeout=15000)
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        c.get(f"http://tunnel.test:{upstream.plain_port}/browser-filtered-out")
        assert c.get("http://browser.denied.test/").status_code == 403
    rows.filter(has_text="browser.denied.test").first.wait_for(timeout=10000)
    time.sleep(0.5)
    texts = rows.all_inner_texts()
    assert texts and all("\tdeny\t" in text for text in texts)
    assert not any("browser-filtered-out" in text for text in texts)
    page.screenshot(path=str(tmp_path / "filtered.png"))

    rows.filter(has_text="browser.denied.test").first.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#event")
    dialog.wait_for(state="visible", timeout=5000)
    assert '"server.address": "browser.denied.test"' in page.locator("#event-json").inner_text()
    page.screenshot(path=str(tmp_path / "event.png"))
    page.keyboard.press("Escape")

    page.locator("#denied tr").first.wait_for(timeout=15000)
    assert "browser.denied.test" in page.locator("#denied").inner_text()
    assert page.locator("#chart rect").count() >= 1
    assert '"*": "allow"' in page.locator("#profile").inner_text()
    assert errors == []
    assert all((tmp_path / name).stat().st_size > 0 for name in ("loaded.png", "live.png", "filtered.png", "event.png"))
