"""The message and actor commands against a real daemon: ``submit --stream``, ``broadcast``,
``actors``, ``actor create / call / events / destroy``, with their output and exit codes."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import orjson
import pytest

from qoper8._daemon.cli_commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.daemon_support import REPO, qoper8_command, run_cli, running

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemon_support import Daemon

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("cli-actors"), children=2, token="tok") as d:
        yield d


def cli(d: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--url", d.url, "--token", "tok", stdin=stdin)


def test_submit_stream_prints_each_message_then_the_result(daemon: Daemon) -> None:
    done = cli(daemon, "submit", "--stream", '{"type": "count", "n": 3}')
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines() == ['{"i":0}', '{"i":1}', '{"i":2}', '{"sent":3}']
    done = cli(daemon, "submit", "--stream", '{"type": "progress", "n": 2}')
    assert (done.returncode, done.stdout) == (EXIT_OK, "2\n")
    assert "progress: " in done.stderr
    failed = cli(daemon, "submit", "--stream", '{"type": "fail_after", "n": 1}')
    assert (failed.returncode, failed.stdout) == (EXIT_FAILED, "0\n")
    assert "JobFailed" in failed.stderr


def test_broadcast_prints_a_table_or_json_and_exits_1_when_a_child_failed(
    daemon: Daemon,
) -> None:
    done = cli(daemon, "broadcast", "ping", '{"value": 1}')
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHILD", "PID", "REPLY"]
    assert len(lines) == 3
    pids = {str(c["pid"]) for c in daemon.status()["children"]}
    assert {line.split()[1] for line in lines[1:]} == pids
    failed = cli(daemon, "broadcast", "boom", "--json", "--timeout", "5")
    assert failed.returncode == EXIT_FAILED
    report = orjson.loads(failed.stdout)
    assert report["complete"] is False
    assert {r["error"]["type"] for r in report["replies"]} == {"JobFailed"}
    assert cli(daemon, "broadcast", "ping", "not json").returncode == EXIT_USAGE


def test_actor_commands_create_call_list_follow_and_destroy(daemon: Daemon) -> None:
    created = cli(daemon, "actor", "create", "counter", "cli-c", '{"start": 10}')
    assert created.returncode == EXIT_OK, created.stderr
    assert created.stdout.startswith("actor 'cli-c' (counter): ready, pid ")
    again = cli(daemon, "actor", "create", "counter", "cli-c")
    assert (again.returncode, "ActorExists" in again.stderr) == (EXIT_FAILED, True)
    got = cli(daemon, "actor", "create", "counter", "cli-c", "--if-exists", "get")
    assert got.returncode == EXIT_OK

    events = subprocess.Popen(
        qoper8_command("actor", "events", "cli-c", "--url", daemon.url, "--token", "tok"),
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The follower says so once it is subscribed: every call from then on is seen.
        assert events.stderr is not None
        assert "following 'cli-c'" in events.stderr.readline()
        value = 10
        call = cli(daemon, "actor", "call", "cli-c", "add", '{"n": 5}')
        assert call.stdout == f"{value + 5}\n"
        table = cli(daemon, "actors")
        assert table.stdout.split("\n")[0].split() == [
            "NAME", "TYPE", "STATE", "PID", "RESTARTS", "QUEUED", "CALLS",
        ]  # fmt: skip
        assert table.stdout.split("\n")[1].split()[:3] == ["cli-c", "counter", "ready"]
        listed = orjson.loads(cli(daemon, "actors", "--json").stdout)
        assert [a["name"] for a in listed] == ["cli-c"]
        failed = cli(daemon, "actor", "call", "cli-c", "fail")
        assert (failed.returncode, "JobFailed" in failed.stderr) == (EXIT_FAILED, True)
        assert cli(daemon, "actor", "destroy", "cli-c").returncode == EXIT_OK
        out, err = events.communicate(timeout=30)
    finally:
        events.kill()
        events.wait()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert lines == [{"event": "added", "payload": {"n": 5, "value": value + 5}}]
    assert "the stream ended (destroyed)" in err
    gone = cli(daemon, "actor", "call", "cli-c", "add")
    assert (gone.returncode, "ActorNotFound" in gone.stderr) == (EXIT_FAILED, True)
    assert cli(daemon, "actors").stdout == "no actors\n"


def test_the_status_table_counts_the_actors_by_state() -> None:
    from qoper8._daemon.cli_status import format_status

    assert "actors" not in format_status({"children": []})
    text = format_status(
        {
            "children": [],
            "actors": [{"state": "ready"}, {"state": "ready"}, {"state": "restarting"}],
        }
    )
    assert text.splitlines()[-1] == "actors: 3 (2 ready, 1 restarting; qoper8 actors lists them)"
