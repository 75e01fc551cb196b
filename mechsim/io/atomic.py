"""Write a file or a folder completely or not at all.

Every table, JSON record and figure mechsim writes goes to a temporary file beside the
target and is renamed over it only when complete (a rename within a folder is atomic on
POSIX and Windows); an output folder (``mechsim run``) is assembled the same way.  A failure
half way, an interrupt or a full disk therefore leaves the previous file as it was and no
partial file behind.

A process that is killed (SIGKILL, power loss) cannot clean up after itself, so temporary
names say whose they are: ``.<name>.mechsim-partial-<host>-<pid>-<random>``.  The next write
into the same folder removes those whose process is gone (same host, pid no longer
running); nothing else is ever removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ValidationError

__all__ = ["atomic_folder", "check_new_folder", "clean_stale_partials", "write_atomically",
           "write_text_atomically"]

_MARK = "mechsim-partial"
_STALE = re.compile(rf"^\..*\.{_MARK}-([0-9a-f]{{8}})-(\d+)-[0-9a-f]+(\.[^.]*)?$")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _partial_name(name: str, suffix: str = "") -> str:
    """A temporary name next to ``name``; ``suffix`` is kept (savefig picks the format
    from it)."""
    return f".{name}.{_MARK}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: keep its files
    return True


def clean_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders that a killed mechsim process left in
    ``folder`` (this host, process no longer running); returns what was removed."""
    removed = []
    host = _host()
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            found = _STALE.match(entry.name)
            if not found or found.group(1) != host or _alive(int(found.group(2))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def _check_folder(path: Path) -> None:
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"cannot write {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise ValidationError(f"cannot write {path}: folder {folder} does not exist")


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that choose a format from it
    (``savefig``) still work.  An OSError (missing folder, no permission, disk full)
    becomes a one-line :class:`ValidationError` naming ``path``; anything else the writer
    raises propagates unchanged.  Either way nothing is left at the temporary name.
    """
    path = Path(path)
    _check_folder(path)
    if path.is_dir():
        raise ValidationError(f"cannot write {path}: it is a folder")
    clean_stale_partials(path.parent)
    tmp = path.parent / _partial_name(path.stem, path.suffix)
    try:
        # exclusive create: the name is ours alone; the mode is what a plain open() gives
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        if path.exists():  # or that of the file it replaces
            with contextlib.suppress(OSError):  # a file system without modes
                os.chmod(tmp, path.stat().st_mode & 0o7777)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for a text (UTF-8)."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_new_folder(out: str | Path) -> Path:
    """``out`` as a Path if a new folder can be made there (it does not exist, and no
    file stands where a parent folder should be); else a one-line ValidationError."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValidationError(f"output folder {out} already exists; choose another --out or "
                              "remove it (nothing was written)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValidationError(f"cannot create {out}: {parent} is a file, not a "
                                      "folder")
            break
    return out


@contextlib.contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` to fill; rename it to ``out`` when the block
    ends normally, remove it on any exception (KeyboardInterrupt included).

    ``out`` must not exist; missing parent folders are created.
    """
    out = check_new_folder(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"cannot create {out}: {exc.strerror or exc}") from None
    clean_stale_partials(parent)
    tmp = parent / _partial_name(out.name)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise ValidationError(f"cannot create {out}: {exc.strerror or exc}") from None
    try:
        yield tmp
        try:
            tmp.rename(out)
        except OSError as exc:
            raise ValidationError(f"cannot create {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
