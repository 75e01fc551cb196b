"""A disk cache for the compiled engine's per-model functions.

numba compiles a model's RHS, Jacobian, parameter-only values and straight-line LU in
every new process: for the flagship anti-CD38 model that is about 6 seconds, paid again by
every ``mechsim simulate``, every worker process and every test run.  numba can keep
machine code on disk, but only for functions defined in a source file (its cache is keyed
by the file's path and time stamp).  So the generated functions are written out as one
module per model, in mechsim's cache folder, and imported from there; numba then caches
their machine code beside it (``__pycache__``), and a later process loads it in a fraction
of a second.

What is written is mechsim's own generated code (from the AST that :mod:`mechsim.codegen`
and :mod:`.sparse_lu` build; no text from a model file), and it is executed only if the
file holds exactly the text this process would write: a file that differs in any byte is
replaced first, never run.  The file's name is a hash of its text, and the text carries a
fingerprint of the engine's source, so a changed model or a changed mechsim never meets a
stale file or stale machine code.

The folder is ``$MECHSIM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mechsim`` (by default
``~/.cache/mechsim``).  ``MECHSIM_CACHE_DIR=off`` turns the cache off; an unwritable folder
does too, silently: the functions are then compiled in memory, as without a cache.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import types
from functools import cache
from pathlib import Path

__all__ = ["cache_dir", "load_module"]

#: the modules whose source decides what the cached machine code does
_ENGINE_MODULES = ("mechsim.codegen", "mechsim.solvers.ndf_kernel", "mechsim.solvers.hoist",
                   "mechsim.solvers.sparse_lu", "mechsim.solvers.model_cache")


def cache_dir() -> Path | None:
    """The folder for generated modules, created if need be; None when the cache is off or
    the folder cannot be written."""
    setting = os.environ.get("MECHSIM_CACHE_DIR", "")
    if setting.strip().lower() == "off":
        return None
    if setting:
        folder = Path(setting).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "mechsim"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


@cache
def engine_fingerprint() -> str:
    """A hash of the source of the modules that shape the generated machine code."""
    digest = hashlib.sha256()
    for name in _ENGINE_MODULES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        try:
            digest.update(Path(path).read_bytes() if path else name.encode())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


def module_text(title: str, imports: str, functions: list[ast.FunctionDef]) -> str:
    """The source of a module holding ``functions`` (generated ASTs), after ``imports``."""
    body = "\n\n\n".join(ast.unparse(ast.fix_missing_locations(f)) for f in functions)
    return (f'"""{title}\n\nWritten by mechsim (engine {engine_fingerprint()}); generated '
            'code, checked against what mechsim would write before every use: do not edit."""'
            f"\n\n{imports}\n\n\n{body}\n")


def load_module(text: str) -> types.ModuleType | None:
    """A module made from ``text`` whose functions read as defined in a file of the cache
    folder (written there if it is missing or differs), so that numba can cache their
    machine code; None when the cache is off or unusable.

    The code run is ``text`` itself, compiled here, never what the file holds: the file
    only gives numba a path and a time stamp to key its cache on."""
    folder = cache_dir()
    if folder is None:
        return None
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    name = f"mechsim_model_{key}"
    path = folder / f"{name}.py"
    try:
        if not _holds(path, text):
            _write(path, text)
    except OSError:
        return None
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        exec(compile(text, str(path), "exec"), module.__dict__)  # mechsim's generated code
        # numba records the module of a cached function by name and imports it when it
        # loads the machine code again
        sys.modules[name] = module
    return module


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, text: str) -> None:
    # a new file renamed into place: another process reading it sees the old or the new
    # text, never half of one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
