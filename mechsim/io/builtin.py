"""Where the built-in models, parameter sets, scenarios and datasets are, and how a name
or a path is resolved to a file.  Light on purpose (no pint, no sympy): ``mechsim list``
reads only this and the files' headers."""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path

from ..errors import ParseError, ValidationError

__all__ = ["builtin_dir", "builtin_names", "resolve"]

#: Where each kind of built-in file lives in a source checkout; an installed package has a
#: copy of each folder in ``mechsim/_builtin/<kind>`` (pyproject.toml, force-include).
_SOURCE_FOLDERS = {"models": "models", "params": "params", "scenarios": "examples/scenarios",
                   "data": "examples/data"}
#: The suffix of each kind's files (a built-in is named without it).
_SUFFIX = {"data": ".csv"}


def builtin_dir(kind: str) -> Path:
    """Folder of the built-in ``models``, ``params`` or ``scenarios`` files (installed copy
    first)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_builtin" / kind, here.parent / _SOURCE_FOLDERS[kind]):
        if candidate.is_dir():
            return candidate
    raise ValidationError(f"built-in {kind}/ folder not found next to {here}; "
                          "reinstall mechsim")


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of a kind, without the ``.toml`` suffix."""
    return sorted(p.stem for p in builtin_dir(kind).glob(f"*{_SUFFIX.get(kind, '.toml')}"))


def resolve(name_or_path: str | Path, kind: str) -> Path:
    """A path as given if it exists or looks like a file, else a built-in by name."""
    text = str(name_or_path)
    path = Path(text)
    singular = kind[:-1] if kind.endswith("s") else kind
    folder = ParseError(f"{text} is a folder; give a {singular} file or a built-in name")
    if path.is_file() or path.suffix or "/" in text or "\\" in text:
        if path.is_dir():
            raise folder
        if path.exists() and not path.is_file():  # a device or a pipe: it may never end
            raise ParseError(f"{text} is not a regular file")
        if not path.is_file():
            raise ParseError(f"no such file: {text}")
        return path
    candidate = builtin_dir(kind) / f"{text}{_SUFFIX.get(kind, '.toml')}"
    if candidate.is_file():
        return candidate
    if path.is_dir():
        raise folder
    names = builtin_names(kind)
    close = get_close_matches(text, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(f"unknown built-in {singular} {text!r} ({hint}built-in: "
                          f"{', '.join(names) or 'none'}; or give a file path)")
