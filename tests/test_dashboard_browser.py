"""The dashboard in a real headless Chromium: it asks for the token, shows the children that
``/v1/status`` lists, and its numbers move while jobs run. Saves a screenshot (under the
test's tmp dir; also to ``$TEST_QOPER8_SCREENSHOT`` when set, which is how
``docs/dashboard.png`` is made)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from typing import TYPE_CHECKING

import pytest

from tests.browser import chromium, need_chromium
from tests.daemon_support import running

if TYPE_CHECKING:
    from pathlib import Path

    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.daemon_support import Daemon

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

TOKEN = "dashboard-token"
WAIT = 30.0  # a guard: the page updates twice a second
SCREENSHOT_SECONDS = 40  # traffic drawn for the README's picture (only when asked for)


def number(driver: WebDriver, element_id: str) -> int:
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, element_id).text.replace(",", "")
    return int(text) if text.isdigit() else -1


def rows(driver: WebDriver) -> list[dict[str, str]]:
    """The children the page shows: pid, state and the current job's age, per row (read in
    one script: the page redraws its tables twice a second)."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('tr.child')].map((r) => ({pid: r.dataset.pid,"
        " state: r.querySelector('.state').textContent,"
        " age: r.querySelector('.job-age').textContent}))"
    )
    assert isinstance(found, list)
    return found


def test_the_dashboard_shows_the_children_and_moves_while_jobs_run(tmp_path: Path) -> None:
    need_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    gate = tmp_path / "gate"
    with running(tmp_path, token=TOKEN, children=2) as d, chromium(tmp_path) as driver:
        wait = WebDriverWait(driver, WAIT)
        driver.get(d.url + "/")

        # The page is public; its data is not: it asks for the token.
        wait.until(ec.visibility_of_element_located((By.ID, "token-form")))
        driver.find_element(By.ID, "token-input").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "live"))

        pids = {str(c["pid"]) for c in d.status()["children"]}
        wait.until(lambda drv: {r["pid"] for r in rows(drv)} == pids)
        assert driver.find_element(By.ID, "worker").text == "tests.daemon_handlers:worker"
        assert not driver.find_element(By.ID, "actors").is_displayed()  # no actor yet
        completed = number(driver, "total-completed")
        assert completed >= 0

        # A job that runs while we watch: its child turns busy and its age moves on.
        blocked = threading.Thread(
            target=d.json, args=("POST", "/v1/submit", {"type": "wait_file", "path": str(gate)})
        )
        blocked.start()
        try:
            wait.until(lambda drv: any(r["state"] == "busy" for r in rows(drv)))
            first = next(r["age"] for r in rows(driver) if r["state"] == "busy")
            wait.until(
                lambda drv: any(r["state"] == "busy" and r["age"] != first for r in rows(drv))
            )
            # Jobs that end move the totals; one that fails shows in the errors.
            for i in range(20):
                assert d.json("POST", "/v1/submit", {"type": "echo", "value": i})[0] == 200
            assert d.json("POST", "/v1/submit", {"type": "fail", "message": "shown"})[0] == 500
            wait.until(lambda drv: number(drv, "total-completed") >= completed + 20)
            wait.until(lambda drv: number(drv, "total-failed") >= 1)
            wait.until(ec.text_to_be_present_in_element((By.ID, "errors-body"), "shown"))
            # The charts draw the history (a point a second).
            wait.until(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#chart-queue polyline"))
        finally:
            gate.touch()
            blocked.join(WAIT)

        if os.environ.get("TEST_QOPER8_SCREENSHOT"):
            show_some_traffic(d, driver)
        save_screenshot(driver, tmp_path)

        # An actors panel appears once the status lists actors: one created over HTTP.
        code, info = d.json("POST", "/v1/actors", {"type": "counter", "name": "cart:42"})
        assert code == 201, info
        assert d.json("POST", "/v1/actors/cart:42/call", {"method": "add"})[0] == 200
        wait.until(ec.visibility_of_element_located((By.ID, "actors")))
        wait.until(ec.text_to_be_present_in_element((By.ID, "actors-body"), "cart:42"))
        cells = driver.find_element(By.CSS_SELECTOR, "#actors-body tr.actor").text.split()
        assert cells[:2] == ["cart:42", "counter"]
        assert str(info["pid"]) in cells

        # No script error, no blocked load (the Content-Security-Policy reports there); the
        # one 401 is the page's first try without a token.
        severe = [
            entry
            for entry in driver.get_log("browser")  # type: ignore[attr-defined]
            if entry["level"] == "SEVERE"
            and not ("/v1/events" in entry["message"] and "401" in entry["message"])
        ]
        assert severe == []


def show_some_traffic(d: Daemon, driver: WebDriver) -> None:
    """For the README's picture only (``TEST_QOPER8_SCREENSHOT``): half a minute of uneven
    traffic, so that the charts have something to draw."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    async def traffic() -> None:
        async with d.client() as client:
            for second in range(SCREENSHOT_SECONDS):
                burst = 20 + 15 * (second % 7)
                jobs = [client.submit({"type": "echo", "value": i}) for i in range(burst)]
                if second % 9 == 4:
                    jobs.append(client.submit({"type": "fail", "message": "a bad input"}))
                await asyncio.gather(*jobs, return_exceptions=True)
                await asyncio.sleep(1.0)  # a pace for the picture, not a synchronisation

    asyncio.run(traffic())
    WebDriverWait(driver, WAIT).until(
        lambda drv: (
            len(
                (
                    drv.find_element(By.CSS_SELECTOR, "#chart-throughput polyline").get_attribute(
                        "points"
                    )
                    or ""
                ).split()
            )
            >= SCREENSHOT_SECONDS // 2
        )
    )


def save_screenshot(driver: WebDriver, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wanted = os.environ.get("TEST_QOPER8_SCREENSHOT")
    if wanted:
        shutil.copyfile(shot, wanted)


def test_the_dashboard_groups_children_by_role_with_each_roles_queue(tmp_path: Path) -> None:
    """A daemon of two roles: a section per role, its children under it, and its own queue
    length (one role's backlog shows in that role only)."""
    need_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    gate = tmp_path / "gate"
    roles = (
        "--role",
        "users=tests.roles.users:worker:2",
        "--role",
        "reports=tests.roles.reports:worker:1",
    )
    with running(tmp_path, *roles, worker=None, token=TOKEN) as d, chromium(tmp_path) as driver:
        wait = WebDriverWait(driver, WAIT)
        driver.get(d.url + "/")
        wait.until(ec.visibility_of_element_located((By.ID, "token-form")))
        driver.find_element(By.ID, "token-input").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "live"))

        def pids_of(drv: WebDriver, role: str) -> set[str]:
            found = drv.execute_script(
                f"return [...document.querySelectorAll('#role-{role} tr.child')]"
                ".map((r) => r.dataset.pid)"
            )
            assert isinstance(found, list)
            return {str(p) for p in found}

        def queued(drv: WebDriver, role: str) -> str:
            return str(drv.find_element(By.CSS_SELECTOR, f"#role-{role} .role-queue").text)

        status = d.status()
        by_id = {c["id"]: c for c in status["children"]}
        expected = {
            role["name"]: {str(by_id[i]["pid"]) for i in role["children"]}
            for role in status["roles"]
        }

        def shown(drv: WebDriver) -> bool:
            return all(pids_of(drv, name) == pids for name, pids in expected.items())

        wait.until(shown)
        assert len(pids_of(driver, "users")) == 2
        assert len(pids_of(driver, "reports")) == 1

        # The one reports child busy and two more reports waiting: its queue only.
        action = {"type": "report.wait", "path": str(gate)}
        held = [
            threading.Thread(target=d.json, args=("POST", "/v1/submit?role=reports", action))
            for _ in range(3)
        ]
        for thread in held:
            thread.start()
        try:
            wait.until(lambda drv: queued(drv, "reports") == "2")
            assert queued(driver, "users") == "0"
            assert d.json("POST", "/v1/submit", {"type": "user.get", "id": 1})[0] == 200
        finally:
            gate.touch()
            for thread in held:
                thread.join(WAIT)
        wait.until(lambda drv: queued(drv, "reports") == "0")
        save_screenshot(driver, tmp_path)
