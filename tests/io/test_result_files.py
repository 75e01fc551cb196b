"""Result writers: one per suffix, registered in one table."""

import json

import numpy as np
import pytest

import mechsim
from mechsim import ValidationError
from mechsim.io import result_files


@pytest.fixture(scope="module")
def res():
    return mechsim.simulate("one_compartment", "100 mg iv", until="2 day", every="1 day")


def test_csv_and_json_carry_the_same_numbers_and_units(res, tmp_path):
    result_files.write_result(res, tmp_path / "r.csv", ["C_mass"])
    result_files.write_result(res, tmp_path / "r.json", ["C_mass"])
    table = np.genfromtxt(tmp_path / "r.csv", delimiter=",", skip_header=1)
    record = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "time [d],C_mass [mg/L]"
    assert record["outputs"]["C_mass"]["unit"] == "mg/L"
    np.testing.assert_allclose(table[:, 1], record["outputs"]["C_mass"]["values"])
    np.testing.assert_allclose(table[:, 1], res["C_mass"].to("mg/L").magnitude)


def test_a_new_format_is_one_registered_function(res, tmp_path, monkeypatch):
    def write_tsv(result, path, names):
        path.write_text(result_files.format_table(result, names) + "\n")
        return path

    monkeypatch.setitem(result_files.WRITERS, ".tsv", write_tsv)
    result_files.write_result(res, tmp_path / "r.tsv", ["C"])
    assert (tmp_path / "r.tsv").read_text().startswith("time [d]\tC [nM]\n0\t")


def test_an_unknown_suffix_or_output_writes_nothing(res, tmp_path):
    with pytest.raises(ValidationError, match=r"must end in \.csv or \.json"):
        result_files.write_result(res, tmp_path / "r.xlsx")
    with pytest.raises(ValidationError, match="no output named 'X'"):
        result_files.write_result(res, tmp_path / "r.csv", ["X"])
    assert list(tmp_path.iterdir()) == []
