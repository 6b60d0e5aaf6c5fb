"""Roles in a real ``qoper8 serve`` (issue 13 item 1), two roles from a TOML file: the CLI
(submit --role, resize ROLE SIZE, status per role), the signals (TTIN/TTOU on the first role,
WINCH and TTIN on every role), and HUP per role (one that adds or removes a role is refused,
and the daemon keeps serving); a daemon of one worker module answers as before."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest

import qoper8
from tests.daemon_support import run_cli, running, wait_status, wait_until, write_toml

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

USERS = "tests.roles.users:worker"
REPORTS = "tests.roles.reports:worker"


def _config(
    tmp_path: Path, *, users: int = 1, roles: tuple[str, ...] = ("users", "reports")
) -> Path:
    lines = ["timeout = 30", "idle-timeout = 30"]
    if "users" in roles:
        lines += ["[roles.users]", f'worker = "{USERS}"', f"children = {users}"]
    if "reports" in roles:
        lines += ["[roles.reports]", f'worker = "{REPORTS}"', 'children = "1:3"']
    return write_toml(tmp_path / "roles.toml", lines)


def _role(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in status["roles"] if r["name"] == name)
    return found


def _ready(status: dict[str, Any], name: str, size: int, generation: int | None = None) -> bool:
    role = _role(status, name)
    gen = role["generation"] if generation is None else generation
    by_id = {c["id"]: c for c in status["children"]}
    mine = [by_id[i] for i in role["children"] if i in by_id]
    return (
        role["generation"] == gen
        and role["target_size"] == size
        and len(mine) == size
        and all(c["state"] in ("idle", "busy") and c["generation"] == gen for c in mine)
    )


def _serve(tmp_path: Path, config: Path) -> Any:
    return running(tmp_path, "-c", str(config), worker=None)


def test_qoper8_commands_act_on_the_roles_of_a_daemon(tmp_path: Path) -> None:
    with _serve(tmp_path, _config(tmp_path)) as d:
        url = ("--url", d.url)
        done = run_cli("submit", '{"type": "whoami"}', "--role", "reports", *url)
        assert done.returncode == 0, done.stderr
        assert '"role":"reports"' in done.stdout
        done = run_cli("submit", '{"type": "whoami"}', *url)
        assert done.returncode == 1
        assert "pass role=" in done.stderr

        done = run_cli("resize", "+1", *url)
        assert done.returncode == 1
        assert "name one" in done.stderr
        done = run_cli("resize", "users", "+1", *url)
        assert (done.returncode, done.stdout.strip()) == (0, "children: 2 (role users)")
        done = run_cli("resize", "reports", "0:2", *url)
        assert done.returncode == 0, done.stderr
        assert "autoscaling 0:2" in done.stdout

        done = run_cli("status", *url)
        assert done.returncode == 0, done.stderr
        assert f"role users: {USERS}, target 2" in done.stdout
        assert "(autoscaling 0:2)" in done.stdout
        status = d.status()
        assert (_role(status, "reports")["min_size"], _role(status, "reports")["max_size"]) == (
            0,
            2,
        )


async def test_ttin_and_ttou_act_on_the_first_role_winch_and_ttin_on_all(tmp_path: Path) -> None:
    with _serve(tmp_path, _config(tmp_path)) as d:
        async with d.client() as client:
            d.signal(signal.SIGTTIN)
            await wait_status(
                client, lambda s: _ready(s, "users", 2), daemon=d, what="users at 2 after TTIN"
            )
            status = await client.status()
            assert (_role(status, "reports")["min_size"], _role(status, "reports")["max_size"]) == (
                1,
                3,
            )
            d.signal(signal.SIGTTOU)
            await wait_status(
                client, lambda s: _ready(s, "users", 1), daemon=d, what="users at 1 after TTOU"
            )

            d.signal(signal.SIGWINCH)
            paused = await wait_status(
                client,
                lambda s: s["paused"] and not s["children"],
                daemon=d,
                what="every role paused, no child left",
            )
            assert all(r["paused"] for r in paused["roles"])
            health = await client.health()
            assert health["status"] == "paused"

            d.signal(signal.SIGTTIN)
            back = await wait_status(
                client,
                lambda s: _ready(s, "users", 1) and _ready(s, "reports", 1),
                daemon=d,
                what="every role back after TTIN",
            )
            assert not back["paused"]
            reports = _role(back, "reports")
            assert (reports["min_size"], reports["max_size"], reports["paused"]) == (1, 3, False)
            assert await client.submit({"type": "report.build"}, timeout=30) is not None


async def test_hup_reloads_every_role_and_refuses_a_change_of_roles(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with _serve(tmp_path, config) as d:
        async with d.client() as client:
            assert await client.resize(2, role="users") == 2
            assert await client.resize((0, 3), role="reports") == 1  # its one child stays
            # A plain HUP: a new generation for each role; each keeps the size or range set
            # above (the file's did not change), so reports may go down to 0 now.
            d.signal(signal.SIGHUP)
            reloaded = await wait_status(
                client,
                lambda s: _ready(s, "users", 2, 2) and _role(s, "reports")["generation"] == 2,
                daemon=d,
                what="both roles at generation 2",
            )
            reports = _role(reloaded, "reports")
            assert (reports["min_size"], reports["max_size"]) == (0, 3)
            assert await client.resize(1, role="reports") == 1
            await wait_status(
                client, lambda s: _ready(s, "reports", 1, 2), daemon=d, what="reports at 1"
            )
            # The file's size changed: it applies, to that role only.
            _config(tmp_path, users=3)
            d.signal(signal.SIGHUP)
            await wait_status(
                client,
                lambda s: _ready(s, "users", 3, 3) and _ready(s, "reports", 1, 3),
                daemon=d,
                what="users at 3, both at generation 3",
            )
            # A role taken away: refused with a logged error; both roles serve on.
            _config(tmp_path, roles=("users",))
            d.signal(signal.SIGHUP)

            async def refused() -> bool:
                return "reload refused" in d.log_text()

            await wait_until(refused, daemon=d, what="the refused reload in the log")
            assert "the roles changed (users, reports -> users)" in d.log_text()
            status = await client.status()
            assert [r["name"] for r in status["roles"]] == ["users", "reports"]
            assert _role(status, "reports")["generation"] == 3
            mine = await client.submit({"type": "report.build"}, result_type=dict)
            assert mine["role"] == "reports"
            # Over HTTP the same refusal is a typed 422.
            with pytest.raises(qoper8.ConfigError, match="roles changed"):
                await client.reload()


def test_a_daemon_of_one_worker_answers_as_before(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        status = d.status()
        [role] = status["roles"]
        assert (role["name"], role["worker"]) == ("daemon_handlers", "tests.daemon_handlers:worker")
        assert status["worker"] == "tests.daemon_handlers:worker"
        code, body = d.json("POST", "/v1/submit?role=daemon_handlers", {"type": "echo", "value": 1})
        assert (code, body) == (200, {"result": 1})
        code, body = d.json("POST", "/v1/submit?role=other", {"type": "echo", "value": 1})
        assert (code, body["error"]["type"]) == (422, "InvalidAction")
        code, body = d.json("POST", "/v1/resize", {"children": 2})
        assert (code, body["role"], body["children"]) == (200, "daemon_handlers", 2)
        _, _, metrics = d.http("GET", "/metrics")
        assert b"qoper8_queue_length 0" in metrics
