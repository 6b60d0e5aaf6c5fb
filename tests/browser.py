"""A real headless Chromium for the dashboard's tests: Debian's ``chromium`` driven through
its ``chromium-driver`` by Selenium, both named by path so that Selenium never looks for
(or downloads) a browser of its own.

Where no Chromium is installed the browser tests skip, saying what to install; with
``CI=true`` they fail instead (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM: Final = "/usr/bin/chromium"
CHROMEDRIVER: Final = "/usr/bin/chromedriver"
ARGS: Final = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,1000",
)


def need_chromium() -> None:
    """Skip (fail with ``CI=true``) unless Chromium, its driver and Selenium are here."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    reason = ""
    if missing:
        reason = (
            f"no headless Chromium: {', '.join(missing)} not found "
            "(apt-get install chromium chromium-driver)"
        )
    else:
        try:
            import selenium  # noqa: F401
        except ImportError:
            reason = "selenium is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def chromium(tmp: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile under ``tmp``), quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
