"""A real headless browser for the HTML report: Debian's Chromium (/usr/bin/chromium) driven by Playwright.

Playwright's own browser download cannot be reached here, so it drives the system binary. Without it a
test fails under CI (`.ci/run` installs it with apt-get) and is skipped elsewhere, saying how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Opened:
    """A page opened from a file, with everything it complained about."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (.ci/run does)")
    pytest.skip(message)


@pytest.fixture
def open_in_chromium() -> Iterator[Any]:
    """`open_in_chromium(path)` loads a file:// page in headless Chromium and returns an `Opened`."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)

        def open_(path: Path) -> Opened:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            opened = Opened(page)
            page.on("console", lambda m: opened.errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))
            page.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: opened.requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => window.Plotly !== undefined && document.querySelectorAll("
                                   "'.js-plotly-plot .main-svg').length > 0", timeout=20_000)
            return opened

        try:
            yield open_
        finally:
            browser.close()
