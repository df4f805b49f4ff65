"""Can worker processes be spawned from here? (the ``if __name__ == "__main__":`` guard)

Worker processes are started with the ``spawn`` method: each one re-imports the script that
started the batch (``__main__``) before it can take a job. A plain script that calls
:func:`lesionquant.run_batch` at its top level, outside an ``if __name__ == "__main__":``
block, would call it again in every worker, which then fails while it starts. This module
tells, before any process is started, whether the call comes from such a script, so the
runner can run the scans in its own process instead (see ``docs/batch.md``).

Safe without a guard: notebooks, the interactive prompt and ``python -c`` (no script file to
re-import), ``python -m package`` (multiprocessing does not re-run a ``__main__`` module), and
calls made from the library itself (the ``lesionquant`` command).
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import sys
from types import FrameType

__all__ = ["unguarded_main_call"]

logger = logging.getLogger(__name__)


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either order)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str, mtime_ns: int) -> tuple[tuple[int, int], ...] | None:
    """Line ranges of the top-level ``if __name__ == "__main__":`` bodies of a script;
    ``None`` when the file cannot be read or parsed."""
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    ranges = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test) and node.body:
            ranges.append((node.body[0].lineno,
                           max(getattr(n, "end_lineno", n.lineno) or n.lineno
                               for n in node.body)))
    return tuple(ranges)


def _main_module_frame(frame: FrameType | None, main_globals: dict) -> FrameType | None:
    """The frame running ``__main__``'s top-level code, if it is on the stack."""
    while frame is not None:
        if frame.f_globals is main_globals and frame.f_code.co_name == "<module>":
            return frame
        frame = frame.f_back
    return None


def unguarded_main_call(frame: FrameType | None = None) -> str | None:
    """The script whose top-level code (outside ``if __name__ == "__main__":``) is running
    this call, or ``None`` when spawning worker processes is safe.

    Parameters
    ----------
    frame : frame, optional
        Where to start looking up the stack (default: the caller's frame).

    Returns
    -------
    str or None
        The script's path when worker processes would re-run the call while they start.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None  # notebook, interactive prompt, python -c: nothing is re-imported
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None  # python -m package: multiprocessing does not re-run it
    module_frame = _main_module_frame(frame or sys._getframe(1), vars(main))
    if module_frame is None:
        return None  # not called from the script's top-level code (e.g. a thread)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = 0
    ranges = _guarded_lines(str(path), mtime)
    if ranges is None:
        logger.debug("%s: cannot read the script to look for a __main__ guard", path)
        return str(path)  # unknown: assume the worst, the in-process run is always correct
    line = module_frame.f_lineno
    if any(first <= line <= last for first, last in ranges):
        return None
    return str(path)
