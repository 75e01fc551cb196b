"""Maximum-likelihood fits: exact answers on the one-compartment model, recovery of known
parameters from simulated data, intervals, identifiability, profiles, individual fits,
parameter files, the command line."""

import math

import numpy as np
import pytest

import mechsim
from mechsim import UnitError, ValidationError
from mechsim.cli import main
from mechsim.dataset import Dataset, Subject
from mechsim.testing import superpose

Q = mechsim.Quantity
V, K = 10.0, math.log(2)        # one_compartment: L, 1/day
TIMES = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0])
REGIMEN = "1000 nmol iv every 3 days x 2"


def one_compartment_data(values_per_subject, outputs="C", unit="nM"):
    subjects = tuple(
        Subject(id=str(i + 1), regimen=mechsim.Regimen.parse(REGIMEN), times=Q(TIMES, "day"),
                values=np.asarray(v, dtype=float), outputs=(outputs,) * TIMES.size,
                before_dose=np.zeros(TIMES.size, bool), covariates={}, lines=())
        for i, v in enumerate(values_per_subject))
    return Dataset(subjects=subjects, value_units={outputs: mechsim.ureg.Unit(unit)},
                   time_unit=mechsim.ureg.day)


def exact(v=V, cl=K * V):
    k = cl / v
    return superpose(lambda s: 1000 / v * np.exp(-k * s), [0.0, 3.0], TIMES)


def test_noise_free_data_give_the_true_values_and_the_closed_form_likelihood():
    truth = exact(v=12.0, cl=4.0)
    # a proportional error cannot vanish: two subjects with the same +-5 % pattern pin it
    data = one_compartment_data([truth * 1.05, truth * 0.95])
    result = mechsim.fit("one_compartment", data, estimate=["V", "CL"], error="proportional",
                         rtol=1e-10)
    assert result.success
    assert result.estimates["V"].to("L").magnitude == pytest.approx(12.0, rel=1e-5)
    assert result.estimates["CL"].to("L/day").magnitude == pytest.approx(4.0, rel=1e-5)
    # -2 log L at the optimum, by hand: b^2 = mean(((y - f)/f)^2) for a proportional error
    y = np.concatenate([truth * 1.05, truth * 0.95])
    f = np.concatenate([truth, truth])
    b2 = np.mean(((y - f) / f) ** 2)
    expected = np.sum(np.log(2 * np.pi * b2 * f ** 2) + (y - f) ** 2 / (b2 * f ** 2))
    assert result.minus2ll == pytest.approx(expected, rel=1e-7)
    assert result.estimates["C.proportional"].magnitude == pytest.approx(math.sqrt(b2),
                                                                          rel=1e-4)
    n, p = 16, 3
    assert result.aic == pytest.approx(result.minus2ll + 2 * p)
    assert result.bic == pytest.approx(result.minus2ll + p * math.log(n))


def noisy(seed, n_subjects=6, b=0.1, v=12.0, cl=4.0):
    rng = np.random.default_rng(seed)
    truth = exact(v=v, cl=cl)
    return one_compartment_data([truth * (1 + b * rng.standard_normal(truth.size))
                                 for _ in range(n_subjects)])


def test_known_values_are_recovered_within_their_intervals():
    result = mechsim.fit("one_compartment", noisy(1), estimate=["V", "CL"])
    for name, true in (("V", 12.0), ("CL", 4.0)):
        lo = result.lower[name].magnitude
        hi = result.upper[name].magnitude
        est = result.estimates[name].magnitude
        assert lo < true < hi and lo < est < hi, (name, lo, est, hi)
    assert 0.07 < result.estimates["C.proportional"].magnitude < 0.13
    assert result.estimates["V"].units == mechsim.ureg.Unit("L")
    assert abs(result.correlation[0, 1]) < 1 and result.correlation[0, 0] == pytest.approx(1)


@pytest.mark.slow
def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    hits, seeds = {"V": 0, "CL": 0}, range(200)
    for seed in seeds:
        result = mechsim.fit("one_compartment", noisy(seed + 1000, n_subjects=3),
                             estimate=["V", "CL"])
        for name, true in (("V", 12.0), ("CL", 4.0)):
            hits[name] += result.lower[name].magnitude < true < result.upper[name].magnitude
    for name, count in hits.items():
        # binomial(200, 0.95): 95 % of runs fall in 184-196
        assert 180 <= count <= 198, (name, count)


def test_a_parameter_the_data_say_nothing_about_is_named():
    result = mechsim.fit("one_compartment", noisy(2), estimate=["V", "CL", "ka"])
    assert result.not_identifiable == ("ka",)  # only IV doses: absorption never acts
    assert math.isnan(result.standard_errors["ka"].magnitude)
    assert "ka" in str(result) and "not identifiable" in str(result)


def test_profile_interval_agrees_with_the_wald_interval_when_the_fit_is_good():
    result = mechsim.fit("one_compartment", noisy(3), estimate=["V", "CL"])
    profile = result.profile("CL")
    assert profile.identifiable
    for a, b in ((profile.lower, result.lower["CL"]), (profile.upper, result.upper["CL"])):
        assert a.to("L/day").magnitude == pytest.approx(b.to("L/day").magnitude, rel=0.03)
    assert profile.minus2ll.min() == pytest.approx(result.minus2ll, abs=1e-6)


def test_individual_fits_recover_each_subjects_values():
    truths = [(10.0, 3.0), (14.0, 5.0), (8.0, 2.0)]
    rng = np.random.default_rng(4)
    data = one_compartment_data([exact(v, cl) * (1 + 0.02 * rng.standard_normal(TIMES.size))
                                 for v, cl in truths])
    fits = mechsim.fit("one_compartment", data, estimate=["V", "CL"], individual=True,
                       workers=2)
    assert set(fits.fits) == {"1", "2", "3"} and not fits.failed
    for sid, (v, cl) in zip(("1", "2", "3"), truths):
        assert fits[sid].estimates["V"].magnitude == pytest.approx(v, rel=0.05)
        assert fits[sid].estimates["CL"].magnitude == pytest.approx(cl, rel=0.05)


def test_multistart_reports_how_many_starts_reached_the_best_optimum():
    result = mechsim.fit("one_compartment", noisy(5), estimate=["V", "CL"], multistart=4,
                         bounds={"V": ("1 L", "100 L"), "CL": ("0.1 L/day", "50 L/day")})
    assert result.starts == 5 and 1 <= result.starts_at_best <= 5
    assert "of 5 starts reached the best optimum" in str(result)


def test_a_fitted_parameter_file_reads_back_with_its_provenance_and_error_model(tmp_path):
    data = mechsim.read_dataset("pheno", units={"TIME": "h", "AMT": "mg", "DV": "mg/L",
                                                "WGT": "kg"}, route="iv", observe="C")
    result = mechsim.fit("phenobarbital", data, estimate=["CL_per_kg", "V_per_kg"])
    path = result.to_params(tmp_path / "fitted.toml")
    ps = mechsim.load_params(path)
    assert ps.values["CL_per_kg"].value.magnitude == pytest.approx(
        result.estimates["CL_per_kg"].magnitude, rel=1e-12)
    assert "fitted by mechsim.fit" in ps.values["CL_per_kg"].source
    assert data.sha256 in ps.values["V_per_kg"].source
    kind, values = ps.error_model("C")
    assert kind == "proportional" and values["proportional"] == pytest.approx(
        result.estimates["C.proportional"].magnitude)
    # the fitted file puts the model at the optimum
    again = mechsim.fit("phenobarbital", data, estimate=["CL_per_kg", "V_per_kg"],
                        params=[path])
    assert again.minus2ll == pytest.approx(result.minus2ll, abs=1e-6)
    # and the shipped fit (params/phenobarbital_fit.toml) is what this fit gives today
    shipped = mechsim.load_params("phenobarbital_fit")
    for name in ("CL_per_kg", "V_per_kg"):
        assert shipped.values[name].value.magnitude == pytest.approx(
            result.estimates[name].magnitude, rel=1e-4)


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(estimate=["Vx"]), ValidationError, "cannot estimate 'Vx'"),
    (dict(estimate=[]), ValidationError, "at least one parameter"),
    (dict(estimate=["V"], error="poisson"), ValidationError, "'poisson' is not one of"),
    (dict(estimate=["V"], start={"CL": "1 L/day"}), ValidationError, "start names 'CL'"),
    (dict(estimate=["V"], start={"V": "3 mg"}), UnitError, "dimension"),
    (dict(estimate=["V"], bounds={"V": ("5 L", "1 L")}), ValidationError, "low < high"),
    (dict(estimate=["V"], scale={"V": "logit"}), ValidationError, "'log' or 'linear'"),
])
def test_bad_fit_options_are_one_line(kwargs, error, fragment):
    with pytest.raises(error, match=fragment) as info:
        mechsim.fit("one_compartment", noisy(6), **kwargs)
    assert "\n" not in str(info.value)


def test_the_command_line_writes_estimates_parameters_and_figures(tmp_path, capsys):
    args = ["fit", "phenobarbital", "pheno", "--units", "TIME=h,AMT=mg,DV=mg/L,WGT=kg",
            "--observe", "C", "--estimate", "CL_per_kg,V_per_kg", "--out", str(tmp_path / "f")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "CL_per_kg" in out and "-2 log L" in out
    names = {p.name for p in (tmp_path / "f").iterdir()}
    assert {"estimates.csv", "fitted_params.toml", "predictions.csv", "residuals.png",
            "observed_vs_predicted.png"} <= names and any("individual_fits" in n for n in names)
    rows = (tmp_path / "f" / "estimates.csv").read_text().splitlines()
    assert rows[0].startswith("parameter,estimate,standard_error") and len(rows) == 4
    cl = rows[1].split(",")
    assert cl[0] == "CL_per_kg" and cl[5] == "L/h/kg"
    estimate, se, lower, upper = map(float, cl[1:5])  # plain numbers a spreadsheet reads
    assert lower < estimate < upper and se > 0
    # every observation with its prediction; WRES = (DV - PRED) / (b PRED) for this error
    b = float((tmp_path / "f" / "estimates.csv").read_text().splitlines()[3].split(",")[1])
    header, *lines = (tmp_path / "f" / "predictions.csv").read_text().splitlines()
    assert header == "ID,TIME [h],output,DV,PRED,unit,WRES" and len(lines) == 155
    for line in lines:
        _, _, output, dv, pred, unit, wres = line.split(",")
        assert output == "C" and unit == "mg/L"
        assert float(wres) == pytest.approx((float(dv) - float(pred)) / (b * float(pred)),
                                            rel=1e-6)
    assert main(args) == 2  # the folder exists now: refused, nothing overwritten
    assert "already exists" in capsys.readouterr().err


def test_the_command_line_fits_each_subject_on_its_own(tmp_path, capsys):
    truths = [(10.0, 3.0), (14.0, 5.0)]
    rng = np.random.default_rng(7)
    rows = ["ID,TIME [day],AMT [nmol],DV [nM]"]
    for sid, (v, cl) in enumerate(truths, start=1):
        values = exact(v, cl) * (1 + 0.02 * rng.standard_normal(TIMES.size))
        # REGIMEN's doses as records, each before the observations at its time
        events = [(0.0, 0, "1000,."), (3.0, 0, "1000,.")]
        events += [(t, 1, f"0,{y}") for t, y in zip(TIMES, values)]
        rows += [f"{sid},{t},{rest}" for t, _, rest in sorted(events)]
    (tmp_path / "two.csv").write_text("\n".join(rows) + "\n")
    assert main(["fit", "one_compartment", str(tmp_path / "two.csv"), "--route", "iv",
                 "--observe", "C", "--estimate", "V,CL", "--individual", "--out", str(tmp_path / "f")]) == 0
    assert "individual fits of 2 subjects" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "f").iterdir()} == {"individual_estimates.csv",
                                                            "individual_fits.png"}
    header, *lines = (tmp_path / "f" / "individual_estimates.csv").read_text().splitlines()
    assert header == "ID,parameter,estimate,standard_error,unit"
    got = {(r[0], r[1]): (float(r[2]), r[4]) for r in (line.split(",") for line in lines)}
    for sid, (v, cl) in zip(("1", "2"), truths):
        assert got[sid, "V"][0] == pytest.approx(v, rel=0.05) and got[sid, "V"][1] == "L"
        value, unit = got[sid, "CL"]
        assert Q(value, unit).to("L/day").magnitude == pytest.approx(cl, rel=0.05)
