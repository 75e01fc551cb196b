"""The compiled engine's disk cache of per-model functions (mechsim/solvers/model_cache.py):
what it writes, that a later process uses it, that it never runs a file it did not write,
and that results are the same bits with the cache on, off or unusable."""

import json
import os
import subprocess
import sys

import pytest

from mechsim.solvers import model_cache, ndf_kernel

pytestmark = pytest.mark.skipif(not ndf_kernel.available(), reason="needs numba")

# one run of a model with a parameter-only subexpression (derive) and a sparse LU, printed
# as exact hex floats
RUN = """
import json, sys
import mechsim
res = mechsim.simulate(sys.argv[1], sys.argv[2], until="30 day", every="5 day",
                       method="NDF")
print(json.dumps([float(v).hex() for v in res.states.ravel()]))
"""
SMALL = ("one_compartment", "100 mg oral every 1 d x 3")


def run_in_fresh_process(cache: str, model="cd40_apc",
                         regimen="3 mg/kg iv every 14 days x 2") -> list[str]:
    env = {**os.environ, "MECHSIM_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", RUN, model, regimen], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def model_files(folder):
    return sorted(folder.glob("mechsim_model_*.py"))


def test_a_later_process_uses_the_cache_and_gets_the_same_bits(tmp_path):
    first = run_in_fresh_process(str(tmp_path))
    files = model_files(tmp_path)
    assert len(files) == 1
    machine_code = {p.name: p.stat().st_mtime_ns
                    for p in (tmp_path / "__pycache__").glob("*.nbc")}
    assert {name.split(".")[1].split("-")[0] for name in machine_code} >= {
        "rhs", "jac", "derive", "sparse_lu_factor", "sparse_lu_solve"}
    second = run_in_fresh_process(str(tmp_path))
    assert second == first
    # the second process loaded the machine code: it wrote none
    assert {p.name: p.stat().st_mtime_ns
            for p in (tmp_path / "__pycache__").glob("*.nbc")} == machine_code
    assert run_in_fresh_process("off") == first


def test_a_file_that_differs_is_replaced_and_never_run(tmp_path):
    run_in_fresh_process(str(tmp_path), *SMALL)
    [path] = model_files(tmp_path)
    genuine = path.read_text()
    sentinel = tmp_path / "ran"
    path.write_text(f"open({str(sentinel)!r}, 'w').close()\n" + genuine)
    run_in_fresh_process(str(tmp_path), *SMALL)
    assert not sentinel.exists()
    assert path.read_text() == genuine


def test_the_cache_folder_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHSIM_CACHE_DIR", "off")
    assert model_cache.cache_dir() is None
    monkeypatch.setenv("MECHSIM_CACHE_DIR", str(tmp_path / "a" / "b"))
    assert model_cache.cache_dir() == tmp_path / "a" / "b"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MECHSIM_CACHE_DIR", str(blocked / "cache"))
    assert model_cache.cache_dir() is None  # cannot be created: compiled in memory instead
    monkeypatch.delenv("MECHSIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.cache_dir() == tmp_path / "xdg" / "mechsim"


def test_an_unusable_cache_folder_still_simulates(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert run_in_fresh_process(str(blocked / "cache"), *SMALL) == \
        run_in_fresh_process("off", *SMALL)


def test_the_written_module_is_the_generated_functions_and_nothing_from_the_model(tmp_path,
                                                                                   monkeypatch):
    """Model names, state and parameter names never reach the file: only numbered locals,
    numbers and the engine's helpers."""
    import mechsim
    from mechsim.compile import _Compiler

    monkeypatch.setenv("MECHSIM_CACHE_DIR", str(tmp_path))
    model = mechsim.load_model("cd40_apc")
    cm = _Compiler(model).build()  # not the shared compiled model: its functions are built
    ndf_kernel.chunk_runner(cm)
    [path] = model_files(tmp_path)
    text = path.read_text()
    for name in (*cm.state_names, *cm.parameter_names, cm.name):
        assert f" {name} " not in text and f"{name}(" not in text and f"'{name}'" not in text
    assert text.count("\ndef ") == 6  # rhs, jac, factor, solve, roots, derive
