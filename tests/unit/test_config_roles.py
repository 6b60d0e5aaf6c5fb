"""The daemon's roles from its sources (issue 13 item 1): ``[roles.NAME]`` tables, ``--role``
specs read from the right, ``QOPER8_ROLES``; top-level settings as every role's defaults;
errors that name the role, the setting and the source."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from qoper8._config_roles import parse_role_spec
from qoper8._config_sources import load_config
from qoper8._daemon.cli import main
from qoper8.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

USERS = "tests.roles.users:worker"
REPORTS = "tests.roles.reports:worker"


def toml(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qoper8.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("spec", "name", "settings"),
    [
        (
            "users=workers.users:worker:8",
            "users",
            {"worker": "workers.users:worker", "children": 8},
        ),
        (
            "reports=workers.reports:worker:0:2",
            "reports",
            {"worker": "workers.reports:worker", "children": [0, 2]},
        ),
        ("users=workers.users:8", "users", {"worker": "workers.users", "children": 8}),
        ("users=workers.users", "users", {"worker": "workers.users"}),
        ("users = workers.users:worker ", "users", {"worker": "workers.users:worker"}),
        # Read from the right: at most two numbers; a third is the reference's (and refused).
        ("a=m:x:1:2:3", "a", {"worker": "m:x:1", "children": [2, 3]}),
    ],
)
def test_a_role_spec_is_read_from_the_right(
    spec: str, name: str, settings: dict[str, object]
) -> None:
    assert parse_role_spec(spec) == (name, settings)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("workers.users:worker", "not a role"),
        ("=workers.users:worker", "not a role"),
        ("users=", "not a role"),
        ("9lives=workers.users", "role name '9lives'"),
        ("a b=workers.users", "role name 'a b'"),
    ],
)
def test_a_malformed_role_spec_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_role_spec(spec)


def test_role_tables_take_any_pool_setting_over_the_top_level_defaults(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        "timeout = 5",
        "children = 3",
        "[roles.users]",
        f'worker = "{USERS}"',
        "children = 8",
        "[roles.reports]",
        f'worker = "{REPORTS}"',
        'children = "0:2"',
        "max-queue = 10",
        'queue = "reports-jobs"',
    )
    cfg = load_config(path, environ={})
    assert list(cfg.roles) == ["users", "reports"]  # the file's order: users is the first
    users, reports = cfg.roles["users"].pool, cfg.roles["reports"].pool
    assert (users.worker, users.children, users.max_children, users.timeout) == (USERS, 8, None, 5)
    assert (reports.children, reports.max_children, reports.max_queue) == (0, 2, 10)
    assert reports.timeout == 5  # a top-level default
    assert cfg.pool == users  # the first role's: what TTIN and TTOU act on
    assert cfg.queues() == {"users": "users", "reports": "reports-jobs"}


def test_role_flags_and_the_variable_give_the_same_roles() -> None:
    specs = [f"users={USERS}:2", f"reports={REPORTS}:0:2"]
    by_flag = load_config(environ={}, overrides={"roles": specs})
    by_variable = load_config(environ={"QOPER8_ROLES": ", ".join(specs)})
    by_spaces = load_config(environ={"QOPER8_ROLES": "  ".join(specs)})
    assert by_flag.roles == by_variable.roles == by_spaces.roles
    assert [(r.pool.children, r.pool.max_children) for r in by_flag.roles.values()] == [
        (2, None),
        (0, 2),
    ]


def test_the_highest_source_of_roles_replaces_the_others(tmp_path: Path) -> None:
    path = toml(tmp_path, "[roles.users]", f'worker = "{USERS}"', "timeout = 9")
    cfg = load_config(path, environ={}, overrides={"roles": [f"reports={REPORTS}:1"]})
    assert list(cfg.roles) == ["reports"]
    cfg = load_config(path, environ={"QOPER8_ROLES": f"reports={REPORTS}"})
    assert list(cfg.roles) == ["reports"]


def test_a_single_worker_is_one_role_named_after_its_module() -> None:
    cfg = load_config(environ={}, overrides={"worker": USERS, "queue": "jobs"})
    assert cfg.roles == {}
    assert cfg.pool_configs() == {"users": cfg.pool}
    assert cfg.queues() == {"users": "jobs"}


@pytest.mark.parametrize(
    ("file", "env", "flags", "message"),
    [
        # worker and roles are exclusive, each named with its source.
        (
            [f'worker = "{USERS}"'],
            {},
            {"roles": [f"reports={REPORTS}"]},
            "give either worker (config file",
        ),
        ([], {"QOPER8_WORKER": USERS}, {"roles": [f"a={REPORTS}"]}, "or roles (command line)"),
        # A single --queue has no meaning with roles: each role has its own.
        ([], {}, {"roles": [f"a={REPORTS}"], "queue": "q"}, "give either queue (command line)"),
        (
            ["[roles.users]", f'worker = "{USERS}"', "chidlren = 2"],
            {},
            {},
            "roles.users.chidlren (config file",
        ),
        (["[roles.users]", f'worker = "{USERS}"', "port = 1"], {}, {}, "roles.users.port"),
        (["[roles.users]", "children = 2"], {}, {}, "roles.users.worker (config file"),
        (
            ["[roles.users]", f'worker = "{USERS}"', "children = -1"],
            {},
            {},
            "roles.users.children (config file",
        ),
        # A bad top-level default is named as itself, and for which role.
        (
            ["timeout = -1", "[roles.users]", f'worker = "{USERS}"'],
            {},
            {},
            "timeout (config file",
        ),
        ([], {"QOPER8_ROLES": "users=workers.users:worker:x:y"}, {}, "roles.users.worker"),
        ([], {"QOPER8_ROLES": "users"}, {}, "roles (environment)"),
        ([], {}, {"roles": [f"a={USERS}", f"a={REPORTS}"]}, "role 'a' is given twice"),
        (["roles = 3"], {}, {}, "roles (config file"),
        (["[roles]"], {}, {}, "name at least one role"),
        (
            [
                "[roles.a]",
                f'worker = "{USERS}"',
                'queue = "q"',
                "[roles.b]",
                f'worker = "{REPORTS}"',
            ],
            {},
            {"roles": None},
            None,
        ),
        (
            [
                "[roles.a]",
                f'worker = "{USERS}"',
                'queue = "b"',
                "[roles.b]",
                f'worker = "{REPORTS}"',
            ],
            {},
            {},
            "roles 'a' and 'b' both consume the Redis queue 'b'",
        ),
    ],
)
def test_a_bad_role_setting_is_named_with_its_role_and_source(
    tmp_path: Path,
    file: list[str],
    env: dict[str, str],
    flags: dict[str, object],
    message: str | None,
) -> None:
    path = toml(tmp_path, *file) if file else None
    if message is None:
        load_config(path, environ=env, overrides=flags)  # the control case: valid
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, environ=env, overrides=flags)


def test_an_unknown_role_setting_suggests_the_closest(tmp_path: Path) -> None:
    path = toml(tmp_path, "[roles.users]", f'worker = "{USERS}"', "max_qeue = 1")
    with pytest.raises(ConfigError, match=re.escape("(did you mean 'max_queue'?)")):
        load_config(path, environ={})


def test_serve_names_both_sources_of_a_worker_and_roles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["serve", "--worker", USERS, "--role", f"reports={REPORTS}", "--port", "0"])
    assert code == 2  # EXIT_CONFIG, before anything starts
    err = capsys.readouterr().err
    assert "worker (command line)" in err
    assert "roles (command line)" in err
