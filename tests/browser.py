"""A real browser for the console and portal tests: Debian's Chromium, driven by Playwright for Python.

Playwright's own browser download is not used: the tests launch the system's
Chromium (`PORTICO_TEST_CHROMIUM`, else `chromium` on the PATH). `.ci/run`
installs it with apt when it is missing.

Every page a test opens is watched: a JavaScript error or a console error on
any of them fails the test at its end, with what the browser said.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, sync_playwright


def chromium_path() -> str | None:
    return os.environ.get("PORTICO_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class BrowserErrors:
    """What the pages of one test reported: console errors and uncaught exceptions."""

    seen: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            page = message.page.url if message.page else "?"
            self.seen.append(f"console error on {page}: {message.text} ({message.location.get('url') or 'inline'})")

    def uncaught(self, error: Error) -> None:
        self.seen.append(f"uncaught exception: {error.message}")


# Per module, not per session: while Playwright's synchronous API is open, its event loop is marked as running in
# the test process's main thread, and every later test that runs async code synchronously (async_to_sync) would
# fail in that thread. A module of browser tests opens the browser once and closes it when done.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.fail(
            "The browser tests need Chromium: apt-get install -y chromium "
            "(or point PORTICO_TEST_CHROMIUM at a Chromium binary)."
        )
    # Playwright's synchronous API keeps an event loop marked as running in this thread, which Django takes for
    # an async context and refuses the ORM in. The test code around the browser is synchronous: allowed.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
            launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
            try:
                yield launched
            finally:
                launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_errors() -> BrowserErrors:
    return BrowserErrors()


@pytest.fixture
def browser_context(browser: Browser, browser_errors: BrowserErrors) -> Iterator[BrowserContext]:
    """A fresh profile (no cookies) at 1280 × 800, the width the console is designed for."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    context.on("console", browser_errors.console)
    context.on("weberror", lambda web_error: browser_errors.uncaught(web_error.error))
    try:
        yield context
    finally:
        context.close()
        # Connections the test opened while Playwright's loop was marked running are not the thread's usual ones:
        # closed here, or the test database could not be dropped at the end of the run.
        connections.close_all()
    assert not browser_errors.seen, "the browser reported errors:\n" + "\n".join(browser_errors.seen)


@pytest.fixture
def page(browser_context: BrowserContext) -> Page:
    return browser_context.new_page()
