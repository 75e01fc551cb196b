"""Datasets: NONMEM-style event tables in, subjects with regimens and observations out."""

import textwrap

import numpy as np
import pytest

import mechsim
from mechsim import ParseError, UnitError, ValidationError
from mechsim.dataset import read_dataset

PHENO_UNITS = {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WGT": "kg"}


@pytest.fixture
def csv(tmp_path):
    def write(text, name="data.csv"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path
    return write


def test_pheno_is_read_as_the_nonmem_users_guide_describes_it():
    data = read_dataset("pheno", units=PHENO_UNITS, route="iv", observe="C")
    assert data.n_subjects == 59 and data.n_observations == 155
    assert data.covariate_names == ("WGT", "APGR") and data.varying == ("FA1", "FA2")
    first = data.subjects[0]
    doses = first.regimen.administrations(1e9)
    assert [round(a.time * 24, 6) for a in doses[:3]] == [0.0, 12.5, 24.5]
    assert str(doses[0].dose) == "25 mg iv" and str(doses[1].dose) == "3.5 mg iv"
    np.testing.assert_array_equal(first.times.to("h").magnitude, [2.0, 112.5])
    np.testing.assert_array_equal(first.values, [17.3, 31.0])
    assert first.covariates["WGT"].to("kg").magnitude == 1.4
    assert data.value_units == {"C": mechsim.ureg.Unit("mg/L")}
    assert sum(len(s.regimen.administrations(1e9)) for s in data.subjects) == 589
    assert len(data.sha256) == 64


def test_units_in_the_header_and_every_dose_kind(csv):
    path = csv("""
        ID,TIME [h],EVID,AMT [mg],RATE [mg/h],DUR [h],ADDL,II [h],CMT,DV [ng/mL],WT [kg]
        1,0,1,100,50,.,.,.,1,.,70
        1,1,0,.,.,.,.,.,2,12.5,70
        1,2,1,100,.,.,2,12,1,.,70
        1,6,1,10,.,.,.,.,3,.,70
        1,30,0,.,.,.,.,.,2,3.1,70
        2,0,1,5,.,.,.,.,1,.,80
        2,0,2,.,.,.,.,.,.,.,80
        2,4,0,.,.,.,.,.,2,1.5,80
        """)
    data = read_dataset(path, route={1: "iv", 3: "oral"}, observe={2: "C_mass"})
    a = data.subjects[0]
    doses = a.regimen.administrations(10)
    times = [round(d.time * 24, 9) for d in doses]
    assert times == [0.0, 2.0, 6.0, 14.0, 26.0]  # ADDL 2 more every 12 h after the 2 h dose
    assert str(doses[0].dose) == "100 mg iv at 50 mg/h" and doses[2].dose.route == "oral"
    assert data.value_units["C_mass"] == mechsim.ureg.Unit("ng/mL")
    assert data.subjects[1].covariates["WT"].magnitude == 80 and data.n_observations == 3


def test_without_evid_a_positive_amount_is_a_dose_and_mdv_skips_a_row(csv):
    path = csv("""
        ID,TIME,AMT,MDV,DV
        1,0,10,1,0
        1,1,0,0,5
        1,2,0,1,.
        1,3,0,0,4
        """)
    data = read_dataset(path, units={"TIME": "h", "AMT": "mg", "DV": "mg/L"}, route="iv",
                        observe="C")
    assert data.n_observations == 2 and len(data.subjects[0].regimen.administrations(1)) == 1


def test_an_observation_before_a_dose_row_at_the_same_time_is_a_trough(csv):
    path = csv("""
        ID,TIME [h],AMT [mg],DV [mg/L]
        1,0,10,.
        1,12,0,3
        1,12,10,.
        1,12,0,8
        """)
    data = read_dataset(path, route="iv", observe="C")
    np.testing.assert_array_equal(data.subjects[0].before_dose, [True, False])


@pytest.mark.parametrize("text, error, fragment", [
    ("ID,TIME,DV\n1,0,1\n", ParseError, "column TIME needs a unit"),
    ("ID,TIME [h],DV [mg/L]\n1,-1,1\n", ParseError, "data.csv:2: column TIME must be"),
    ("ID,TIME [h],DV [mg/L]\n1,2,1\n1,1,1\n", ParseError, "data.csv:3: column TIME goes back"),
    ("ID,TIME [h],DV [mg/L]\n1,0,1\n2,0,1\n1,1,1\n", ParseError, "data.csv:4: column ID: "
     "subject 1 appears again"),
    ("ID,TIME [h],AMT [mL],DV [mg/L]\n1,0,5,.\n", mechsim.RegimenError,
     "data.csv:2: dose amount must be a mass"),
    ("ID,TIME [h],EVID,DV [mg/L]\n1,0,3,.\n", ParseError, r"EVID: 3 \(a reset\)"),
    ("ID,TIME [h],EVID,DV [mg/L]\n1,0,0,.\n", ParseError, "data.csv:2: column DV: an observation "
     "record without a value"),
    ("ID,TIME [h],DV [mg/L],SS\n1,0,1,1\n", ParseError, "steady-state"),
    ("ID,TIME [h],DV [mg/L]\n1,x,1\n", ParseError, "data.csv:2: column TIME: 'x' is not a number"),
    ("ID,TIME [h],DV [mg/L]\n1,0\n", ParseError, "data.csv:2: 2 values for 3 columns"),
    ("ID,TIME [h],AMT [mg],II [h],ADDL,DV [mg/L]\n1,0,5,.,3,.\n", ParseError,
     "ADDL = 3 more doses need an interval II > 0"),
    ("ID,TIME [kg],DV [mg/L]\n1,0,1\n", UnitError, "column TIME is in kg"),
    ("ID,TIME [h],AMT [mg],RATE [mg/h],DV [mg/L]\n1,0,5,-2,.\n", ParseError, "RATE: -2"),
    ("ID,TIME [h],AMT [mg],RATE,DUR [h],DV [mg/L]\n1,0,5,1,2,.\n", ParseError,
     "data.csv:2: columns RATE and DUR"),
])
def test_bad_rows_name_the_file_row_and_column(text, error, fragment, csv):
    path = csv(text)
    with pytest.raises(error, match=fragment) as info:
        read_dataset(path, route="iv", observe="C")
    assert "data.csv" in str(info.value) and "\n" not in str(info.value)


def test_a_mapped_compartment_that_is_not_in_the_map(csv):
    path = csv("ID,TIME [h],AMT [mg],CMT,DV [mg/L]\n1,0,5,4,.\n")
    with pytest.raises(ValidationError, match="data.csv:2: column CMT: dose into compartment 4"):
        read_dataset(path, route={1: "iv"}, observe="C")


def test_a_covariate_that_sets_a_parameter_needs_its_dimension():
    data = read_dataset("pheno", units={"TIME": "h", "AMT": "mg", "DV": "mg/L"}, route="iv",
                        observe="C")
    with pytest.raises(UnitError, match="give the column a unit, e.g. 'WGT \\[kg\\]'"):
        data.parameter_values(mechsim.load_model("phenobarbital"))


def test_simulating_a_dataset_gives_each_subject_its_regimen_and_covariates():
    data = read_dataset("pheno", units=PHENO_UNITS, route="iv", observe="C")
    results = data.simulate("phenobarbital", every="1 h")
    first, model = results[0], mechsim.load_model("phenobarbital")
    v = 0.96 * 1.4  # V_per_kg (params/phenobarbital.toml) x this infant's 1.4 kg
    assert first["C"][0].to("mg/L").magnitude == pytest.approx(25 / v, rel=1e-9)
    single = mechsim.simulate(model, data.subjects[0].regimen, until=results[0].time[-1],
                              every="1 h", overrides={"WGT": "1.4 kg"})
    np.testing.assert_allclose(first["C"].magnitude, single["C"].magnitude, rtol=1e-12)


def test_to_csv_round_trips(tmp_path):
    data = read_dataset("pheno", units=PHENO_UNITS, route="iv", observe="C")
    data.to_csv(tmp_path / "copy.csv")
    header = (tmp_path / "copy.csv").read_text().splitlines()[0]
    assert header == "ID,TIME [h],AMT [mg],WGT [kg],APGR,DV [mg/L],FA1,FA2"
    again = read_dataset(tmp_path / "copy.csv", route="iv", observe="C")
    assert again.n_observations == data.n_observations
    for a, b in zip(data.subjects, again.subjects):
        assert a.regimen == b.regimen and np.array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.times.magnitude, b.times.magnitude)
