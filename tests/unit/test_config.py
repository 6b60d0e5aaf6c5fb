"""``ServeConfig`` and ``load_config``: sources, precedence, and errors that name the setting."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from qoper8._config_sources import load_config, read_env, unknown_variables
from qoper8._text import did_you_mean, plural, suggest
from qoper8._values import parse_bind, parse_bytes
from qoper8.config import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    MAX_CHILDREN,
    ServeConfig,
    is_loopback,
)
from qoper8.errors import ConfigError

WORKER = "tests.handlers:worker"


def toml(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qoper8.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_defaults_are_loopback_with_a_10_mib_body_limit() -> None:
    cfg = load_config(environ={}, overrides={"worker": WORKER})
    assert (cfg.host, cfg.port, cfg.max_body_bytes) == (
        DEFAULT_HOST,
        DEFAULT_PORT,
        DEFAULT_MAX_BODY_BYTES,
    )
    assert DEFAULT_MAX_BODY_BYTES == 10 * 1024 * 1024
    assert cfg.token is None
    assert cfg.debug is False
    assert cfg.pool.worker == WORKER


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = toml(tmp_path, f'worker = "{WORKER}"', "children = 2", "port = 9001", "timeout = 5")
    env = {"QOPER8_CHILDREN": "3", "QOPER8_PORT": "9002"}
    cfg = load_config(path, environ=env, overrides={"children": "4", "grace": None})
    assert cfg.pool.children == 4  # flag
    assert cfg.port == 9002  # environment
    assert cfg.pool.timeout == 5.0  # file
    assert cfg.grace == 30.0  # a flag left as None does not override


def test_settings_may_sit_under_a_qoper8_table_with_dashes(tmp_path: Path) -> None:
    path = toml(tmp_path, "[qoper8]", f'worker = "{WORKER}"', "max-body-bytes = 2048")
    assert load_config(path, environ={}).max_body_bytes == 2048


def test_empty_environment_variable_counts_as_unset() -> None:
    assert read_env({"QOPER8_PORT": "", "QOPER8_HOST": "::1", "OTHER": "x"}) == {"host": "::1"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"file": 'children = "lots"'}, "children (config file"),
        ({"env": {"QOPER8_PORT": "99999"}}, "port (environment)"),
        ({"flags": {"grace": "-1"}}, "grace (command line)"),
        ({"flags": {"log_level": "LOUD"}}, "log_level (command line)"),
        ({"file": "colour = 1"}, "unknown setting: colour (config file"),
    ],
)
def test_a_bad_setting_is_named_with_its_source(
    tmp_path: Path, source: dict[str, object], expected: str
) -> None:
    lines = [f'worker = "{WORKER}"']
    if "file" in source:
        lines.append(str(source["file"]))
    env = source.get("env", {})
    flags = source.get("flags", {})
    assert isinstance(env, dict)
    assert isinstance(flags, dict)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(toml(tmp_path, *lines), environ=env, overrides=flags)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(toml(tmp_path, "worker ="), environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", environ={})


def test_missing_worker_is_named() -> None:
    with pytest.raises(ConfigError, match="worker"):
        load_config(environ={})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org", "::"])
def test_non_loopback_host_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="token"):
        load_config(environ={}, overrides={"worker": WORKER, "host": host})
    cfg = load_config(environ={"QOPER8_TOKEN": "t"}, overrides={"worker": WORKER, "host": host})
    assert cfg.token == "t"


def test_a_unix_socket_needs_no_token(tmp_path: Path) -> None:
    cfg = load_config(
        environ={}, overrides={"worker": WORKER, "host": "0.0.0.0", "unix": tmp_path / "s"}
    )
    assert cfg.unix == tmp_path / "s"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("myhost", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_token_is_not_in_the_repr() -> None:
    cfg = load_config(environ={}, overrides={"worker": WORKER, "token": "hunter2"})
    assert "hunter2" not in repr(cfg)


def test_serve_config_is_frozen() -> None:
    cfg = load_config(environ={}, overrides={"worker": WORKER})
    with pytest.raises(ValueError, match="frozen"):
        cfg.port = 1  # type: ignore[misc]
    assert isinstance(cfg, ServeConfig)


def test_redis_lease_and_retries_come_from_flags_and_are_validated() -> None:

    cfg = load_config(
        environ={}, overrides={"worker": "w:worker", "redis_lease": "5", "redis_max_retries": "1"}
    )
    assert (cfg.redis_lease, cfg.redis_max_retries) == (5.0, 1)
    with pytest.raises(ConfigError, match="redis_lease"):
        load_config(environ={}, overrides={"worker": "w:worker", "redis_lease": "0"})


# ==================================================================== issue 9: sizes, bind, hints


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("512B", 512),
        ("64KiB", 64 * 1024),
        ("64k", 64 * 1024),
        ("512M", 512 * 2**20),
        ("512 MiB", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("1.5G", 3 * 2**29),
        ("10MB", 10_000_000),
        ("1kb", 1000),
        ("1T", 2**40),
        ("64_000", 64_000),
    ],
)
def test_byte_sizes_take_units(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "M", "12 parsecs", "-1K", "1.1K", "0x10", "1e6"])
def test_a_size_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|whole number"):
        parse_bytes(text)


def test_sizes_with_units_in_every_source(tmp_path: Path) -> None:
    path = toml(
        tmp_path, f'worker = "{WORKER}"', 'max_memory_per_child = "512M"', "max_body_bytes = 2048"
    )
    cfg = load_config(
        path,
        environ={"QOPER8_MAX_BODY_BYTES": "1MiB"},
        overrides={"max_message_bytes": "2G"},
    )
    assert cfg.pool.max_memory_per_child == 512 * 2**20
    assert cfg.max_body_bytes == 2**20
    assert cfg.pool.max_message_bytes == 2 * 2**30
    with pytest.raises(ConfigError, match=r"max_memory_per_child \(command line\): '5 apples'"):
        load_config(environ={}, overrides={"worker": WORKER, "max_memory_per_child": "5 apples"})


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:9000", {"host": "127.0.0.1", "port": 9000, "unix": None}),
        (":9000", {"port": 9000, "unix": None}),
        ("0.0.0.0", {"host": "0.0.0.0", "unix": None}),
        ("[::1]:9000", {"host": "::1", "port": 9000, "unix": None}),
        ("[::]", {"host": "::", "unix": None}),
        ("localhost:1", {"host": "localhost", "port": 1, "unix": None}),
        ("unix:/run/q.sock", {"unix": "/run/q.sock"}),
        ("unix:///run/q.sock", {"unix": "/run/q.sock"}),
    ],
)
def test_bind_forms(bind: str, expected: dict[str, object]) -> None:
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["", "::1:9000", "[::1", "[::1]x", "host:port", "unix:"])
def test_a_bad_bind_is_refused(bind: str) -> None:
    with pytest.raises(ValueError, match=r"address|bracket|port|unix"):
        parse_bind(bind)


def test_bind_in_each_source_and_its_precedence(tmp_path: Path) -> None:
    path = toml(tmp_path, f'worker = "{WORKER}"', 'bind = "unix:/tmp/q.sock"')
    assert load_config(path, environ={}).unix == Path("/tmp/q.sock")
    cfg = load_config(path, environ={}, overrides={"bind": "127.0.0.2:9001"})
    assert (cfg.host, cfg.port, cfg.unix) == ("127.0.0.2", 9001, None)  # a flag wins
    cfg = load_config(path, environ={"QOPER8_BIND": ":9002"})
    assert (cfg.port, cfg.unix) == (9002, None)
    with pytest.raises(ConfigError, match=r"bind \(command line\): give either bind or port"):
        load_config(environ={}, overrides={"worker": WORKER, "bind": ":1", "port": 2})
    with pytest.raises(ConfigError, match=r"bind \(environment\)"):
        load_config(environ={"QOPER8_BIND": "nowhere:at-all"}, overrides={"worker": WORKER})


def test_a_non_loopback_bind_still_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        load_config(environ={}, overrides={"worker": WORKER, "bind": "0.0.0.0:80"})


def test_an_unknown_setting_suggests_the_closest(tmp_path: Path) -> None:
    path = toml(tmp_path, f'worker = "{WORKER}"', "chidlren = 2")
    hint = r"chidlren \(config file .*\) \(did you mean 'children'\?\)"
    with pytest.raises(ConfigError, match=hint):
        load_config(path, environ={})
    with pytest.raises(ConfigError) as unlike:
        load_config(toml(tmp_path, f'worker = "{WORKER}"', "zzz = 1"), environ={})
    assert "did you mean" not in str(unlike.value)


def test_unknown_variables_are_warned_about_with_a_suggestion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"QOPER8_CHILDERN": "3", "QOPER8_URL": "http://x", "QOPER8_ZZZ": "1", "OTHER": "y"}
    assert unknown_variables(env) == [
        "QOPER8_CHILDERN is not a qoper8 setting and is ignored (did you mean QOPER8_CHILDREN?)",
        "QOPER8_ZZZ is not a qoper8 setting and is ignored",
    ]
    caplog.set_level(logging.WARNING, logger="qoper8.config")
    cfg = load_config(environ={**env, "QOPER8_CHILDREN": "2"}, overrides={"worker": WORKER})
    assert cfg.pool.children == 2
    warned = [r.getMessage() for r in caplog.records if r.name == "qoper8.config"]
    assert len(warned) == 2
    assert "QOPER8_CHILDERN" in warned[0]


def test_new_daemon_switches_and_their_defaults() -> None:
    cfg = load_config(environ={}, overrides={"worker": WORKER})
    assert (cfg.log_format, cfg.access_log, cfg.public_health) == ("text", False, False)
    cfg = load_config(
        environ={"QOPER8_ACCESS_LOG": "1", "QOPER8_LOG_FORMAT": "JSON"},
        overrides={"worker": WORKER, "public_health": True},
    )
    assert (cfg.log_format, cfg.access_log, cfg.public_health) == ("json", True, True)
    with pytest.raises(ConfigError, match="log_format"):
        load_config(environ={}, overrides={"worker": WORKER, "log_format": "xml"})


def test_children_are_bounded_by_max_children() -> None:
    assert (
        load_config(
            environ={}, overrides={"worker": WORKER, "children": MAX_CHILDREN}
        ).pool.children
        == MAX_CHILDREN
    )
    with pytest.raises(ConfigError, match="children"):
        load_config(environ={}, overrides={"worker": WORKER, "children": MAX_CHILDREN + 1})


def test_words() -> None:
    assert [plural(n, "child", "children") for n in (0, 1, 2)] == [
        "0 children",
        "1 child",
        "2 children",
    ]
    assert plural(1, "job") == "1 job"
    assert plural(3, "job") == "3 jobs"
    assert suggest("user.gte", ["user.get", "user.add"]) == "user.get"
    assert suggest("zzz", ["user.get"]) is None
    assert did_you_mean("user.gte", {"user.get"}) == " (did you mean 'user.get'?)"
    assert did_you_mean("zzz", ["user.get"]) == ""
