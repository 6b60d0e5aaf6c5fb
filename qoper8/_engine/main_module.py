"""Functions from the master's main script, run in a child as multiprocessing's spawn does.

``pool.run(square, 7)`` pickles ``square`` as ``__main__.square``; a child's ``__main__`` is its
own loop, so it imports the master's script (or ``-m`` module) under the name ``__mp_main__``,
which keeps the script's ``if __name__ == "__main__":`` block from running, and makes that module
``__main__`` too. Only when a call first names ``__main__``: a pool that never runs such
functions never imports the script in its children. Stdlib only: children import this.
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from typing import Final

# Set in a child while it imports the master's main script: a script that starts a pool at
# import (no ``__main__`` guard) would otherwise start children that import it again, forever.
IMPORTING_MAIN_ENV: Final = "_QOPER8_IMPORTING_MAIN"


def describe_main() -> dict[str, str] | None:
    """How a child can import this process's main script: ``{"name": module}`` when run with
    ``-m``, ``{"path": file}`` for a script, None when there is no file (a REPL, ``-c``, a
    notebook) or it is a package's ``__main__`` (which cannot be imported twice)."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if isinstance(name, str) and name:
        if name == "__main__" or name.endswith(".__main__"):
            return None
        return {"name": name}
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path:
        return {"path": os.path.abspath(path)}
    return None


def alias_main() -> None:
    """Master side: objects of the main script come back from a child pickled as
    ``__mp_main__.X`` (that is its name there); make that name resolve here too, as
    multiprocessing does."""
    main = sys.modules.get("__main__")
    if main is not None:
        sys.modules.setdefault("__mp_main__", main)


def import_main(info: dict[str, str]) -> None:
    """Import the master's main script as ``__mp_main__`` and make it ``__main__`` (child side).

    Raises:
        RuntimeError: the script failed to import (its own error is the ``__cause__``); a
            ``SystemExit`` at import (argparse at top level) is turned into this too, so that
            the child lives on.
    """
    os.environ[IMPORTING_MAIN_ENV] = "1"
    try:
        if "name" in info:
            content = runpy.run_module(info["name"], run_name="__mp_main__", alter_sys=True)
        else:
            content = runpy.run_path(info["path"], run_name="__mp_main__")
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = info.get("name") or info.get("path")
        raise RuntimeError(
            f"importing the master's main script {where!r} in the child failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        os.environ.pop(IMPORTING_MAIN_ENV, None)
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
