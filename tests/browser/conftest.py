"""A real browser for the UI tests: Debian's ``chromium`` driven by Playwright (no browser download works here).

The package is installed by the test setup when it is missing (``apt-get install chromium``, as root in CI); the
tests fail (not skip) when it cannot be, so a green run always means the browser tests ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("WRITEOFFS_CHROMIUM", "/usr/bin/chromium"))
#: Flags for a closed network: without the background-networking ones Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install Debian's chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run([apt, "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a stale package index: refresh once and retry
        subprocess.run([apt, "update", "-q"], env=env, capture_output=True, text=True)
        done = subprocess.run([apt, "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"could not install Debian's chromium: {done.stderr[-500:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def sign_in(browser, server, user: str, next_url: str | None = None):
    """A fresh browser session signed in on Airflow's own login page (then at ``next_url`` when Airflow redirects
    there); returns (context, page). The caller closes the context."""
    from urllib.parse import quote

    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(f"{server.base_url}/auth/login" + (f"?next={quote(next_url, safe='')}" if next_url else ""))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", server.passwords[user])
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=30_000)
    return context, page
