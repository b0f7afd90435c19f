"""Debian's Chromium driven by Playwright, for the tests of the web pages.

Playwright's own browser download is not reachable here, so the system Chromium (``apt-get install
chromium``) is launched by path. Tests that use :func:`chromium_page` skip with a reason where either
is missing. Console errors and uncaught page errors are collected: a page that loads with any fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from polyp_live.tools.web_benchmark import CHROMIUM_FLAGS



def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def skip_without_browser() -> None:
    """Skip the calling test, with the reason, when Chromium or Playwright is missing."""
    if chromium_path() is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("needs Playwright for Python (pip install 'polyp-live[dev]')")


@contextlib.contextmanager
def chromium_page():
    """A fresh headless Chromium page; yields (page, errors) where errors lists console errors."""
    skip_without_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def keep_screenshot(page, name: str) -> None:
    """With POLYP_LIVE_SCREENSHOTS=DIR, save what the page shows now as DIR/NAME (the README's pictures)."""
    folder = os.environ.get("POLYP_LIVE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name))
