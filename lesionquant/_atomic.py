"""Atomic, durable file writes shared by every stage that writes outputs.

A reader (the batch table builder, a browser, a second viewer, a resumed batch) never sees a
half-written file: content goes to a temp file in the destination folder, is fsync'ed, and is
renamed over the destination with ``os.replace``; a crash leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "clean_stale_tmp", "write_bytes_atomic", "write_text_atomic"]


def _tmp_name(path: Path, suffix: str = "") -> Path:
    # pid + random token: unique across processes and threads writing the same destination.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


_TMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def clean_stale_tmp(folder: str | os.PathLike[str]) -> int:
    """Remove the temp files of :func:`atomic_path` that a killed writer left in ``folder``.

    Only files named like ours (``.<name>.<pid>.<8 hex>.tmp...``) whose writing process no
    longer exists are removed, so a writer still running (a batch, another viewer) keeps its
    file. Returns the number removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False) or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically and durably.

    Parameters
    ----------
    path : path-like
        Destination file; its folder is created when missing.
    data : bytes
        File content.
    mode : int, optional
        Permission bits of the new file (e.g. ``0o600`` for secrets); default: the umask's.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, mode: int | None = None
) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed over ``path``.

    For libraries that write files themselves (``SimpleITK.WriteImage``, ``savefig``). The temp
    name keeps the destination's suffixes (``.nii.gz``) so format detection still works.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> dest = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(dest) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> dest.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, "".join(path.suffixes))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
