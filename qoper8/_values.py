"""The human-friendly values settings accept besides plain numbers: byte sizes with a unit
(``512M``, ``2GiB``) and listen addresses (``127.0.0.1:8765``, ``[::1]:8765``,
``unix:/run/q.sock``).

Pure parsing, no I/O: ``config`` calls these from its validators, so a bad value fails with
a ``ConfigError`` naming the setting and where it came from.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["BYTE_UNITS", "parse_bind", "parse_bytes"]

# Single letters and IEC names are powers of 1024 (as systemd, Docker and the JVM read
# "512M"); SI names with a B are powers of 1000. Changing a multiplier silently changes
# every limit written with it.
BYTE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}

_SIZE: Final = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_bytes(value: object) -> object:
    """``"512M"`` as 536870912; anything that is not a string goes back unchanged (pydantic
    then judges it as a number).

    Raises:
        ValueError: a string that is not a number with a known unit.
    """
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in BYTE_UNITS:
        raise ValueError(
            f"{value!r} is not a size: write bytes, or a number with a unit such as "
            "64KiB, 512M, 2G (K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; "
            "KB, MB, GB, TB of 1000)"
        )
    try:
        number = Decimal(match.group(1).replace("_", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        raise ValueError(f"{value!r} is not a size") from None
    size = number * BYTE_UNITS[unit]
    if size != size.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)


def parse_bind(text: str) -> dict[str, object]:
    """Split a listen address into the settings it stands for.

    ``unix:PATH`` gives ``{"unix": PATH}``; ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` and a
    bare ``HOST`` give ``host`` and ``port`` (each only when written) and ``unix: None``, so
    a TCP address also overrides a socket set by a lower-precedence source.

    Raises:
        ValueError: not an address of those forms.
    """
    text = text.strip()
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ValueError("'unix:' needs a socket path, e.g. unix:/run/qoper8.sock")
        return {"unix": path}
    out: dict[str, object] = {"unix": None}
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 address as [::1]:8765")
        port = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:8765")
    else:
        host, sep, port_text = text.partition(":")
        port = port_text if sep else None
    if host:
        out["host"] = host
    if port is not None:
        if not port.isdigit():
            raise ValueError(f"{text!r}: the port must be a number, as in 127.0.0.1:8765")
        out["port"] = int(port)
    if "host" not in out and "port" not in out:
        raise ValueError("an empty address: write HOST:PORT, [IPV6]:PORT or unix:PATH")
    return out
