"""Debian's Chromium driven by Playwright, for the tests of the web pages.

Playwright's own browser download is not reachable here, so the system Chromium (``apt-get install
chromium``) is launched by path. Tests that use :func:`chromium_page` skip with a reason where either
is missing. Console errors and uncaught page errors are collected: a page that loads with any fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


class Served:
    """One process of ours that serves a page (``polyp-live --web`` or ``polyp-live web``); its stderr
    goes to a file, read for the line that gives the address."""

    def __init__(self, module: str, args: list[str], folder: Path, line: str = "web view"):
        self.log = folder / "stderr.txt"
        self._line = re.compile(re.escape(line) + r": (http://\S+)")
        self._log_file = open(self.log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", module, *args],
                                        stdout=subprocess.DEVNULL, stderr=self._log_file)
        self.url = self._wait_for_url()
        self.base = self.url.split("/?")[0].rstrip("/").replace("HOST", "127.0.0.1")

    def _wait_for_url(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._line.search(self.log.read_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                pytest.fail(f"polyp-live ended before serving (exit {self.process.returncode}): "
                            f"{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"no '{self._line.pattern}' line in {timeout:g} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (what Ctrl-C sends) and wait: the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"polyp-live did not stop in {timeout:g} s after SIGINT")
        self._log_file.close()
        return self.process.returncode

    def stderr(self) -> str:
        return self.log.read_text()
