"""Write a file completely or not at all.

Every table, JSON record and figure mechsim writes goes to a temporary file beside the
target and is renamed over it only when complete (a rename within a folder is atomic on
POSIX and Windows).  A failure half way, an interrupt or a full disk therefore leaves the
previous file as it was and no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ValidationError

__all__ = ["write_atomically", "write_text_atomically"]


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that choose a format from it
    (``savefig``) still work.  An OSError (missing folder, no permission, disk full)
    becomes a one-line :class:`ValidationError` naming ``path``; anything else the writer
    raises propagates unchanged.  Either way nothing is left at the temporary name.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ValidationError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise ValidationError(f"cannot write {path}: it is a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                    dir=folder)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    # mkstemp creates the file owner-only; give it the mode a plain open() would have (or
    # keep the mode of the file it replaces)
    with contextlib.suppress(OSError):  # a file system without modes: keep what it gave
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for a text (UTF-8)."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
