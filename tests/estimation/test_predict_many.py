"""Predictions of many subjects in one compiled call are those of one subject at a time:
bit for bit, with different end times and observations at a dose time, before the dose."""

import numpy as np
import pytest

import mechsim
from mechsim import ValidationError
from mechsim.dataset import Dataset, Subject
from mechsim.estimation.problem import FitProblem
from mechsim.runspec import RunSpec

Q = mechsim.Quantity


def _subject(i, times, before):
    times = np.asarray(times, dtype=float)
    return Subject(id=str(i), regimen=mechsim.Regimen.parse("1000 nmol iv every 3 days x 3"),
                   times=Q(times, "day"), values=np.full(times.size, 50.0),
                   outputs=("C",) * times.size, before_dose=np.asarray(before, bool),
                   covariates={}, lines=())


def _problem(method="auto"):
    # subjects end at different times; 3 and 6 days are dose times, observed before the dose
    subjects = (_subject(1, [0.5, 3.0, 4.0], [False, True, False]),
                _subject(2, [1.0, 3.0, 3.0, 6.0, 7.5], [False, True, False, True, False]),
                _subject(3, [0.25, 2.0], [False, False]))
    data = Dataset(subjects=subjects, value_units={"C": mechsim.ureg.Unit("nM")},
                   time_unit=mechsim.ureg.day)
    spec = RunSpec.build("one_compartment", until=Q(7.5, "day"), method=method)
    return FitProblem(spec, data, ("V", "CL"), {"C": "proportional"})


@pytest.mark.parametrize("method", ["auto", "LSODA"])
def test_predict_many_is_predict_of_each_subject(method):
    problem = _problem(method)
    thetas = np.array([[10.0, 5.0], [12.0, 4.0], [8.0, 7.0]])
    log = (True, False)
    many = problem.predict_many(problem.subjects, thetas, log)
    assert problem.solves == 3
    for subject, theta, (f, df) in zip(problem.subjects, thetas, many):
        f1, df1 = problem.predict(subject, theta, log)
        np.testing.assert_array_equal(f, f1)
        np.testing.assert_array_equal(df, df1)
    f2 = many[1][0]
    assert f2[1] < f2[2]  # before the dose at day 3, then after it


def test_a_subject_that_cannot_be_predicted_fails_alone():
    problem = _problem()
    thetas = np.array([[10.0, 5.0], [0.0, 4.0], [8.0, 7.0]])  # no volume
    with pytest.raises(ValidationError):
        problem.predict_many(problem.subjects, thetas, (True, False))
    found = problem.predict_many(problem.subjects, thetas, (True, False),
                                 return_exceptions=True)
    assert isinstance(found[1], ValidationError)
    np.testing.assert_array_equal(found[2][0],
                                  problem.predict(problem.subjects[2], thetas[2],
                                                  (True, False))[0])


def _infusion_problem():
    """Subjects with infusions and a bolus, observed during an infusion, before a dose
    (at its time) and after the last one, ending at different times (one before its last
    infusion has ended, one before its last dose)."""
    regimen = "1000 nmol iv over 1 h every 12 h x 3; 500 nmol iv at 0.75 day"
    rows = ([0.02, 0.5, 0.75, 0.9, 1.02], [False, True, True, False, False]), \
        ([0.25, 0.5, 0.75], [False, True, True]), \
        ([0.1, 0.6, 1.5, 3.0], [False, False, False, False])
    subjects = tuple(
        Subject(id=str(i), regimen=mechsim.Regimen.parse(regimen), times=Q(times, "day"),
                values=np.full(len(times), 50.0), outputs=("C",) * len(times),
                before_dose=np.asarray(before, bool), covariates={}, lines=())
        for i, (times, before) in enumerate(rows))
    data = Dataset(subjects=subjects, value_units={"C": mechsim.ureg.Unit("nM")},
                   time_unit=mechsim.ureg.day)
    spec = RunSpec.build("one_compartment", until=Q(3.0, "day"))
    return FitProblem(spec, data, ("V", "CL"), {"C": "proportional"})


def test_dose_templates_give_predict_of_each_subject():
    # the second and later calls reuse each subject's dose template: new parameters, the
    # same results as one subject at a time, bit for bit
    problem = _infusion_problem()
    log = (True, False)
    for thetas in ([[10.0, 5.0], [12.0, 4.0], [8.0, 7.0]],
                   [[11.0, 4.5], [9.0, 6.0], [14.0, 3.0]]):
        many = problem.predict_many(problem.subjects, np.array(thetas), log)
        positions = problem._templated(problem.subjects, np.array(thetas), log)[0][0]
        assert list(positions) == [0, 1, 2]  # all three took the templates
        for subject, theta, (f, df) in zip(problem.subjects, thetas, many):
            f1, df1 = problem.predict(subject, np.array(theta), log)
            np.testing.assert_array_equal(f, f1)
            np.testing.assert_array_equal(df, df1)
    f = many[0][0]
    assert f[3] > f[2]  # before the bolus at 0.75 day, then after it


def test_dose_templates_follow_the_general_path_where_it_refuses():
    problem = _infusion_problem()
    log = (True, False)
    problem.predict_many(problem.subjects, np.array([[10.0, 5.0]] * 3), log)
    thetas = np.array([[10.0, 5.0], [0.0, 4.0], [8.0, 7.0]])  # no volume: refused
    found = problem.predict_many(problem.subjects, thetas, log, return_exceptions=True)
    assert isinstance(found[1], ValidationError)
    np.testing.assert_array_equal(found[2][1],
                                  problem.predict(problem.subjects[2], thetas[2], log)[1])
