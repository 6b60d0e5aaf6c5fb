"""Short helpers that word qoper8's messages: a count with the right plural, and the
"did you mean ...?" hint for a mistyped name.

Kept apart so the daemon, the CLI, the settings and the pool word these the same way; it
imports only the standard library, so a child may use it too.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["did_you_mean", "plural", "suggest"]

# difflib's similarity cut-off for a suggestion. Lower suggests unrelated names ("port" for
# "sort"); higher misses two-letter typos in short names ("chidlren" still scores 0.875).
SUGGEST_CUTOFF: Final = 0.6


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 child"``, ``"3 children"``: the count and the word that goes with it."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``name`` (a probable typo of it), or None if none is close.

    Example:
        ```python
        suggest("user.gte", ["user.get", "user.add"])  # "user.get"
        ```
    """
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=SUGGEST_CUTOFF)
    return found[0] if found else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'user.get'?)"`` to append to a message about ``name``, or ``""``.

    Example:
        ```python
        f"unknown action type {t!r}{did_you_mean(t, handlers)}"
        # "unknown action type 'user.gte' (did you mean 'user.get'?)"
        ```
    """
    match = suggest(name, choices)
    return "" if match is None else f" (did you mean {match!r}?)"
