"""A headless Chromium page that may only talk to this machine.

Debian's /usr/bin/chromium is driven by Playwright (never `playwright install`). Every request
the page makes is recorded; any request for a host other than loopback is aborted before it
reaches the network (and the test that caused it fails), and the browser resolves no other
host name at all.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
]



def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"data", "about", "blob"}:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RecordedPage:
    page: Page
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    # Playwright's sync API keeps an event loop in this thread, which Django takes for async
    # code; the tests' own database calls (and pytest-django's) are plain synchronous code.
    # Module scope: the loop and that allowance end with the browser tests.
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} "
                    "(apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need "
                                   "playwright (pip install -e '.[test]')")
    with pytest.MonkeyPatch.context() as patch, sync_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: object) -> Iterator[RecordedPage]:
    context = chromium.new_context(viewport={"width": 1280, "height": 860},  # type: ignore[attr-defined]
                                   service_workers="block")
    page = context.new_page()
    recorded = RecordedPage(page)

    def record(request: Request) -> None:
        recorded.requests.append(request.url)

    def guard(route: Route) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            recorded.refused.append(route.request.url)
            route.abort("blockedbyclient")

    page.on("request", record)
    context.route("**/*", guard)
    yield recorded
    context.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ when MAILCLOAK_TEST_SCREENSHOTS names it, else a temporary
    directory (so test runs do not rewrite the documentation's pictures)."""
    target = os.environ.get("MAILCLOAK_TEST_SCREENSHOTS")
    return Path(target) if target else tmp_path
