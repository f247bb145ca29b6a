"""Debian's Chromium, headless, driven by Playwright: launched one way for the browser tests,
the browser benchmark, the operator recordings and the screenshots."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
# Every panel has answered once: no loading skeleton is left.
ALL_PAINTED = (
    "() => document.querySelectorAll('.mc-skeleton').length === 0"
    " && document.querySelectorAll('.mc-panel').length > 0"
)
MISSING = f"{CHROMIUM} is missing: run scripts/install-test-deps.sh (as root)"


@contextmanager
def chromium(playwright: Any, *, downloads: bool = False) -> Iterator[Any]:
    """A headless Chromium with a throwaway home (profile, cache and, with ``downloads``,
    the downloads folder), closed and removed on exit."""
    if not CHROMIUM.is_file():
        raise RuntimeError(MISSING)
    home = Path(tempfile.mkdtemp(prefix="mc-chromium-"))
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    options = {"downloads_path": str(home / "downloads")} if downloads else {}
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=env, **options
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
