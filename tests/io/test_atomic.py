"""Atomic outputs: a file is written completely or not at all."""



import pytest

import mechsim
import mechsim.io.result_files
from mechsim import ValidationError
from mechsim.io.atomic import write_atomically

REGIMEN = "100 mg iv every 7 days x 3"


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

    monkeypatch.setattr(mechsim.io.result_files.csv, "writer", FullDisk)
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
