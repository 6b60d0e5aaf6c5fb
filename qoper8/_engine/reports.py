"""What a child tells the master about an exception, bounded in size.

A report must never be what kills its child: a frame over ``max_message_bytes`` is a
protocol violation, and the master kills the sender. One hostile action with 250,000
unknown fields once made a 91 MB pydantic message. So every report is cut down here
(entries, their texts, the message, the traceback), and ``error_report`` finally guarantees
that the encoded report fits the channel. Stdlib and ``_protocol`` only: children import it
before any worker module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from . import protocol as proto

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..errors import ErrorEntry

__all__ = [
    "MAX_REPORTED_ERRORS",
    "clip",
    "clip_middle",
    "error_entries",
    "error_report",
    "qualified_names",
    "summarize",
]

# Entries a validation report lists; the rest are only counted (errors_omitted). More would
# not help a person, and each costs bytes in every HTTP or Redis answer.
MAX_REPORTED_ERRORS: Final = 20
# Characters of one entry's msg, and of one part of its loc (a field name can be anything a
# caller sent: a 1 MB key would otherwise travel back whole).
MAX_ENTRY_CHARS: Final = 300
MAX_LOC_CHARS: Final = 100
# Parts of one loc kept; a deeper path ends with "...".
MAX_LOC_PARTS: Final = 10
# Characters of a report's message and traceback. The traceback keeps its head and its
# tail (where the exception was raised), cutting the middle.
MAX_MESSAGE_CHARS: Final = 4_000
MAX_TRACEBACK_CHARS: Final = 32_000
# Bytes of a HandlerError's encoded details; larger ones are dropped with a note, since
# they ride in every answer about the job.
MAX_DETAILS_BYTES: Final = 16_000
# Entries whose messages go into the one-line summary of a validation error.
SUMMARY_ENTRIES: Final = 3


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def clip_middle(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters by removing its middle."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n... ({cut} characters cut) ...\n{text[-tail:]}"


_NO_ALIASES: Final[Mapping[str, str]] = {}


def _loc(raw: Iterable[object], aliases: Mapping[str, str]) -> list[str | int]:
    loc: list[str | int] = []
    for i, part in enumerate(raw):
        if i == MAX_LOC_PARTS:
            loc.append("...")
            break
        if isinstance(part, int) and not isinstance(part, bool):
            loc.append(part)
        else:
            text = str(part)
            if i == 0:
                text = aliases.get(text, text)
            loc.append(clip(text, MAX_LOC_CHARS))
    return loc


def error_entries(
    raw: Iterable[Mapping[str, Any]],
    *,
    aliases: Mapping[str, str] | None = None,
    hide: tuple[str, str] | None = None,
) -> list[ErrorEntry]:
    """Up to ``MAX_REPORTED_ERRORS`` entries in the ``{loc, msg, type}`` shape, from
    pydantic's ``errors()`` (or anything of that shape), each clipped.

    Args:
        raw: the entries; only the first ``MAX_REPORTED_ERRORS`` are read.
        aliases: internal field name -> the name the caller used, for the first loc part
            (pydantic reports by alias already; this guards against a loc by field name).
            Never applied to an unknown field: a caller who sent ``p_a`` must read ``p_a``.
        hide: (internal name, replacement) for messages that name an internal model.
    """
    out: list[ErrorEntry] = []
    for item in raw:
        if len(out) == MAX_REPORTED_ERRORS:
            break
        msg = str(item.get("msg", ""))
        unknown = item.get("type") == "extra_forbidden"
        if hide is not None:
            msg = msg.replace(*hide)
        out.append(
            {
                "loc": _loc(item.get("loc", ()), _NO_ALIASES if unknown else aliases or {}),
                "msg": clip(msg, MAX_ENTRY_CHARS),
                "type": clip(str(item.get("type", "")), MAX_LOC_CHARS),
            }
        )
    return out


def summarize(entries: list[ErrorEntry], total: int) -> str:
    """The first few entries on one line, and how many more there are."""
    parts = [f"{proto.format_path(e['loc'])}: {e['msg']}" for e in entries[:SUMMARY_ENTRIES]]
    more = total - len(parts)
    text = "; ".join(parts)
    if more > 0:
        text += f" (and {more} more error{'s' if more > 1 else ''})"
    return text


def qualified_names(exc: BaseException) -> list[str]:
    """``module.QualName`` of the exception's class and of its bases, most-derived first,
    without ``object``: what lets a caller test a remote exception like ``isinstance``."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__ if c is not object]


def error_report(category: str, exc: BaseException, *, limit: int) -> bytes:
    """The JSON payload of an ERROR (or START_FAILED) frame for ``exc``, at most ``limit``
    bytes whatever ``exc`` holds.

    An exception with ``errors`` and ``errors_total`` attributes (a validation failure,
    see ``_worker.ActionRefused``) sends its entries; a ``HandlerError`` its status, code
    and details; any other its traceback, head and tail.
    """
    report: dict[str, Any] = {
        "category": category,
        "type": clip(type(exc).__qualname__, MAX_LOC_CHARS),
        "types": qualified_names(exc),
        "message": clip(_text(exc), MAX_MESSAGE_CHARS),
    }
    entries = getattr(exc, "errors", None)
    if category == proto.ErrorCategory.INVALID and isinstance(entries, list):
        report["errors"] = entries[:MAX_REPORTED_ERRORS]
        total = getattr(exc, "errors_total", len(entries))
        report["errors_omitted"] = max(0, total - len(report["errors"]))
    else:
        report["traceback"] = clip_middle(_traceback(exc), MAX_TRACEBACK_CHARS)
    if "qoper8.errors.HandlerError" in report["types"]:
        _add_handler_fields(report, exc)
    return _fit(report, limit)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as err:  # a broken __str__ must not lose the report
        return f"<{type(exc).__name__}.__str__ raised {type(err).__name__}>"


def _traceback(exc: BaseException) -> str:
    import traceback

    try:
        return "".join(traceback.format_exception(exc))
    except Exception:
        return ""


def _add_handler_fields(report: dict[str, Any], exc: BaseException) -> None:
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    report["status"] = status if type(status) is int else None
    report["code"] = None if code is None else clip(str(code), MAX_LOC_CHARS)
    report["details"] = None
    if details is None:
        return
    try:
        encoded = proto.dumps(details)
    except TypeError as err:
        why = f"not JSON: {err}"
    else:
        if encoded.find(b"null") >= 0 and proto.find_non_finite(details) is not None:
            why = "they hold NaN or Infinity"
        elif len(encoded) > MAX_DETAILS_BYTES:
            why = f"{len(encoded)} bytes encoded, over {MAX_DETAILS_BYTES}"
        else:
            report["details"] = proto.loads(encoded)
            return
    report["message"] += f" (its details were dropped: {why})"


def _fit(report: dict[str, Any], limit: int) -> bytes:
    """Encode ``report``, shedding its bulkiest parts until it fits ``limit`` bytes."""
    payload = proto.dumps(report)
    if len(payload) <= limit:
        return payload
    report.pop("details", None)
    report["traceback"] = clip_middle(report.get("traceback", ""), limit // 8)
    report["message"] = clip(report["message"], limit // 16)
    if "errors" in report:
        kept = report["errors"][:1]
        report["errors_omitted"] += len(report["errors"]) - len(kept)
        report["errors"] = kept
    payload = proto.dumps(report)
    if len(payload) <= limit:
        return payload
    # The floor: a channel is at least 1024 bytes (PoolConfig), and this stays far below.
    return proto.dumps(
        {
            "category": report["category"],
            "type": report["type"][:40],
            "types": [],
            "message": report["message"][:100],
        }
    )
