"""``ServeConfig`` and ``load_config``: sources, precedence, and errors that name the setting."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from qoper8.config import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    ServeConfig,
    is_loopback,
    load_config,
    read_env,
)
from qoper8.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

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
