"""Solver fallback and diagnostics, numerical-honesty warnings, atomic outputs, file limits."""

import warnings

import numpy as np
import pytest

import mechsim
from mechsim import ParseError, SolverError, ValidationError, accuracy
from mechsim.compile import compile_model
from mechsim.errors import NumericalWarning
from mechsim.io.atomic import write_atomically
from mechsim.io.toml_source import MAX_FILE_BYTES
from mechsim.solvers.ndf import NDF

REGIMEN = "100 mg iv every 7 days x 3"


# ---- fallback between stiff methods --------------------------------------------------------

def test_simulate_falls_back_to_another_stiff_method_and_says_so(monkeypatch):
    """NDF failing (injected) on a run gives the Radau result, a NumericalWarning and the
    failure in the diagnostics; the values agree with a direct Radau run."""
    pytest.importorskip("numba")

    def failing(self, problem):
        raise SolverError("injected failure; hint: none")

    monkeypatch.setattr(NDF, "solve", failing)
    with pytest.warns(NumericalWarning, match=r"solver NDF failed \(injected failure\).*Radau"):
        got = mechsim.simulate("one_compartment", REGIMEN, until="21 day", method="NDF")
    assert got.diagnostics.method == "Radau"
    assert got.diagnostics.failed_methods == (("NDF", "injected failure; hint: none"),)
    direct = mechsim.simulate("one_compartment", REGIMEN, until="21 day", method="Radau")
    np.testing.assert_array_equal(got["C"].magnitude, direct["C"].magnitude)


def test_a_clean_run_has_no_failed_methods():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mechsim.simulate("one_compartment", REGIMEN, until="21 day")
    assert res.diagnostics.failed_methods == ()


# ---- numerical honesty ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def cm():
    return compile_model(mechsim.load_model("one_compartment"))


def test_negative_excursion_beyond_tolerance_is_named(cm):
    n, atol = len(cm.state_names), np.full(len(cm.state_names), 1e-12)
    out = np.ones((n, 5))
    i = cm.state_names.index("C")
    out[i, 3] = -1e-3  # far below -(atol + rtol * peak) = -(1e-12 + 1e-8)
    with pytest.warns(NumericalWarning, match=r"state C went negative, down to -0\.001"):
        accuracy.warn_if_inaccurate(cm, out, {}, 1e-8, atol)


def test_negative_noise_within_tolerance_is_not_reported(cm):
    n, atol = len(cm.state_names), np.full(len(cm.state_names), 1e-12)
    out = np.ones((n, 5))
    out[0, 2] = -5e-9  # within rtol * peak = 1e-8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accuracy.warn_if_inaccurate(cm, out, {"C + E": 1e-7}, 1e-8, atol)


def test_conservation_drift_above_tolerance_is_named(cm):
    out = np.ones((len(cm.state_names), 3))
    atol = np.full(len(cm.state_names), 1e-12)
    with pytest.warns(NumericalWarning, match=r"conservation law C \+ E drifted by 0\.002"):
        accuracy.warn_if_inaccurate(cm, out, {"C + E": 2e-3}, 1e-8, atol)


def test_loose_tolerances_on_a_real_run_are_reported():
    """A run at rtol = 1e-2 on the cd38 model: whatever it reports must be true of the
    result it returns (independent check of each warning against the numbers)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mechsim.simulate("cd38_myeloma", "10 mg/kg iv every 2 weeks x 4", until="8 weeks",
                               rtol=1e-2, atol=1e-3, method="LSODA")
    reported = [str(w.message) for w in caught if w.category is NumericalWarning]
    residual = res.diagnostics.max_conservation_residual
    assert (residual > 1000 * 1e-2) == any("drifted" in m for m in reported)


# ---- atomic outputs ------------------------------------------------------------------------

def test_a_failing_writer_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old contents\n")

    def half_then_fail(tmp):
        tmp.write_text("half a tab")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_result_csv_interrupted_by_a_full_disk_keeps_the_previous_file(tmp_path,
                                                                       monkeypatch):
    res = mechsim.simulate("one_compartment", REGIMEN, until="21 day")
    path = tmp_path / "run.csv"
    path.write_text("previous run\n")

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def writerow(self, row):
            self.fh.write(",".join(map(str, row)) + "\n")

        def writerows(self, rows):
            self.fh.write("0,1\n")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(mechsim.result.csv, "writer", FullDisk)
    with pytest.raises(ValidationError, match=r"cannot write .*run.csv: No space left"):
        res.to_csv(path)
    monkeypatch.undo()
    assert path.read_text() == "previous run\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.csv"]
    res.to_csv(path)
    assert path.read_text().startswith("time [d]")


def test_unwritable_destination_is_a_clear_error(tmp_path):
    res = mechsim.simulate("one_compartment", REGIMEN, until="1 day")
    with pytest.raises(ValidationError, match=r"folder .*nowhere does not exist"):
        res.to_csv(tmp_path / "nowhere" / "x.csv")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ValidationError, match="it is a folder"):
        res.to_csv(tmp_path / "adir")


def test_figure_that_cannot_be_drawn_leaves_nothing(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mechsim.plotting import save_figure

    fig = plt.figure()
    target = tmp_path / "fig.nosuchformat"
    with pytest.raises(ValueError, match="nosuchformat"):
        save_figure(fig, target)
    assert not list(tmp_path.iterdir())


# ---- file limits ---------------------------------------------------------------------------

def test_oversized_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "huge.toml"
    with big.open("w") as fh:
        fh.write("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    for load in (mechsim.load_model, mechsim.load_params, mechsim.load_population):
        with pytest.raises(ParseError, match=r"huge.toml: file is 5\.0 MB, larger than"):
            load(big)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "model.toml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ParseError, match="not a text file"):
        mechsim.load_model(path)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """mkstemp makes owner-only files; outputs must be readable like any other file."""
    import os

    from mechsim.io.atomic import write_text_atomically

    mask = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "x.csv", "a\n")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_local_folder_does_not_hide_a_built_in(tmp_path, monkeypatch):
    (tmp_path / "one_compartment").mkdir()
    monkeypatch.chdir(tmp_path)
    assert mechsim.load_model("one_compartment").name == "one_compartment"
    with pytest.raises(ParseError, match="is a folder"):
        mechsim.load_model("./one_compartment")


def test_a_device_is_not_read():
    from mechsim.scenario import read_scenario

    with pytest.raises(ParseError, match="not a regular file"):
        read_scenario("/dev/zero")
