"""TOML text with line numbers: tomllib parses, this finds where a key was written.

tomllib returns plain dicts without positions, so error messages would lose ``file:line``.
:class:`TomlSource` scans the text once for table headers and ``key =`` lines and answers
"which line defines key K in table T" for the messages.  It never interprets values.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ..errors import ParseError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")


#: Model, parameter, population and scenario files are a few kilobytes; anything this large
#: is a mistake (or an attack on the parser) and is refused before it is read.
MAX_FILE_BYTES = 5_000_000


def check_size(path: Path, limit: int = MAX_FILE_BYTES) -> None:
    """Refuse a file larger than ``limit`` bytes (ParseError naming the size)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ParseError(f"no such file: {path}") from None
    except OSError as exc:
        raise ParseError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > limit:
        raise ParseError(f"file is {size / 1e6:.1f} MB, larger than the {limit / 1e6:g} MB "
                         "mechsim reads; is it the right file?", str(path))


def read_text(path: Path | str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a data file, with one-line errors for missing, unreadable, binary
    or oversized files."""
    path = Path(path)
    check_size(path, limit)
    if path.is_dir():
        raise ParseError(f"{path} is a folder, not a file")
    if not path.is_file():  # a device or a pipe: its size says nothing, it may never end
        raise ParseError(f"{path} is not a regular file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ParseError("not a text file (not UTF-8)", str(path)) from None
    except OSError as exc:
        raise ParseError(f"cannot read {path}: {exc.strerror or exc}") from None


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', text)
    return tuple(p.strip("\"'") for p in parts)


class TomlSource:
    """A parsed TOML document plus a map from (table, key) to line number."""

    def __init__(self, text: str, path: str):
        self.path, self.text = path, text
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message ends with "(at line N, column M)": keep it, it is precise.
            raise ParseError(f"not valid TOML: {exc}", path) from None
        self._lines: dict[tuple[tuple[str, ...], str], int] = {}
        self._headers: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        items: dict[tuple[str, ...], int] = {}  # [[array]] tables seen so far
        for number, line in enumerate(text.splitlines(), start=1):
            head = _HEADER.match(line)
            if head:
                table = _split_dotted(head.group(1))
                self._headers.setdefault(table, number)
                if line.lstrip().startswith("[["):
                    # the i-th [[name]] entry is table (name, "[i]"): see item()
                    items[table] = items.get(table, -1) + 1
                    table = self.item(table, items[table])
                    self._headers.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                name = key.group(1).strip("\"'")
                self._lines.setdefault((table, name), number)
                # a dotted key such as `a.b = 1` inside [t] also defines table (t, a)
                self._headers.setdefault(table + (name,), number)

    @staticmethod
    def item(table: tuple[str, ...], index: int) -> tuple[str, ...]:
        """The table path of the ``index``-th ``[[table]]`` entry, for :meth:`where`."""
        return table + (f"[{index}]",)

    @classmethod
    def read(cls, path: Path | str) -> TomlSource:
        return cls(read_text(path), str(path))

    def entry_where(self, section: str, name: str) -> str:
        """Where ``[section.name]`` starts, or where ``name = ...`` sits in ``[section]``."""
        if (section, name) in self._headers:
            return self.where((section, name))
        return self.where((section,), name)

    def where(self, table: tuple[str, ...], key: str | None = None) -> str:
        """``"path:line"`` of ``key`` in ``table`` (or of the table), else just the path."""
        line = self._lines.get((table, key)) if key is not None else None
        if line is None:
            line = self._headers.get(table + ((key,) if key else ()))
        if line is None:
            line = self._headers.get(table)
        return f"{self.path}:{line}" if line else self.path
