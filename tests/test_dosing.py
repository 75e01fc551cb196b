"""Tests for mechsim.dosing: the regimen grammar, schedules, infusions and round trips."""

from __future__ import annotations

import math
import os
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mechsim.dosing import Cycles, Dose, Every, Once, Regimen, Wait
from mechsim.errors import RegimenError
from mechsim.units import Quantity, parse_unit

from budget import examples

ICARIA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
          "then on days 1,15 of 28-day cycles")
POM = "4 mg oral on days 1-21 of 28-day cycles"


def times(regimen: Regimen, until: float) -> list[float]:
    return [a.time for a in regimen.administrations(until)]


def q(magnitude, unit: str):
    return Quantity(magnitude, parse_unit(unit))


# ----------------------------------------------------------------------------- schedules
def test_icaria_isatuximab_schedule():
    r = Regimen.parse(ICARIA)
    expected = [0, 7, 14, 21] + [28 * c + d for c in range(1, 12) for d in (0, 14)]
    assert times(r, 28 * 12) == [float(t) for t in expected]
    assert {a.dose for a in r.administrations(100)} == {
        Dose(q(10, "mg/kg"), "iv", duration=q(1, "h"))}
    assert str(r) == ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycles x 1 "
                      "then on days 1,15 of 28-day cycles")


def test_pomalidomide_backbone_and_parallel_combination():
    pom = Regimen.parse(POM)
    expected = [28 * c + d for c in range(3) for d in range(21)]
    assert times(pom, 84) == [float(t) for t in expected]
    both = Regimen.parse(ICARIA) & pom
    assert both == Regimen.parse(f"{ICARIA}; {POM}") == Regimen.parse(ICARIA).combine(pom)
    assert times(both, 84) == sorted(times(Regimen.parse(ICARIA), 84) + expected)
    # ties keep text order: the isatuximab dose (first sequence) comes before pomalidomide
    day0 = [a.dose.route for a in both.administrations(1)]
    assert day0 == ["iv", "oral"]


def test_then_arithmetic_and_wait():
    r = Regimen.parse("100 mg iv every 7 days x 3 then 50 mg iv every 14 days x 2")
    assert times(r, 100) == [0, 7, 14, 21, 35]
    assert [a.dose.amount for a in r.administrations(100)] == [q(100, "mg")] * 3 + [q(50, "mg")] * 2
    w = Regimen.parse("100 mg iv every 7 days x 2 then wait 10 days then 50 mg iv at 12 h")
    assert times(w, 100) == [0, 7, 24.5]
    f = Regimen.parse("5 mg po every 8 h for 1 d then 1 mg po every 1 wk x 2")
    assert times(f, 100) == pytest.approx([0, 1 / 3, 2 / 3, 1, 8])


def test_dose_reuse_after_then_and_infusion_override():
    r = Regimen.parse("5 mg sc every 1 wk x2 then over 30 min every 2 weeks x 2")
    doses = [a.dose for a in r.administrations(100)]
    assert doses[0] == Dose(q(5, "mg"), "sc")
    assert doses[-1] == Dose(q(5, "mg"), "sc", duration=q(30, "min"))
    assert times(r, 100) == [0, 7, 14, 28]


def test_until_is_exclusive_and_zero_included():
    r = Regimen.parse("1 mg iv every 1 d x 5")
    assert times(r, 3) == [0, 1, 2]
    assert times(r, 3.0000001) == [0, 1, 2, 3]
    assert times(r, 0) == []


# ----------------------------------------------------------------------------- infusions
def test_infusion_by_duration_and_by_rate_agree():
    by_time = Dose(q(100, "mg"), "iv", duration=q(2, "h"))
    by_rate = Dose(q(100, "mg"), "iv", rate=q(50, "mg/h"))
    per_kg = Dose(q(10, "mg/kg"), "iv", rate=q(5, "mg/kg/h"))
    assert by_time.infusion_duration_days() == pytest.approx(2 / 24)
    assert by_rate.infusion_duration_days() == pytest.approx(2 / 24)
    assert per_kg.infusion_duration_days() == pytest.approx(2 / 24)
    assert per_kg.per_body_weight and not by_rate.per_body_weight
    assert by_rate.is_infusion and not Dose(q(1, "mg"), "iv").is_infusion
    assert Dose(q(1, "mg"), "iv").infusion_duration_days() is None
    assert Dose(q(3, "nmol/kg"), "sc").per_body_weight


def test_infusion_ends_and_lags_are_breakpoints_of_the_dose_plan():
    from mechsim.runspec import RunSpec

    for text in ("100 mg iv over 2 h every 1 d x 3", "100 mg iv at 50 mg/h every 1 d x 3"):
        plan = RunSpec.build("one_compartment", text, until="10 day").plan()
        expected = [0.0] + sorted([1.0, 2.0] + [d + 2 / 24 for d in (0, 1, 2)]) + [10.0]
        assert plan.breakpoints(10.0) == pytest.approx(expected)
    # a route's lag moves the dose, and the breakpoint with it (the regimen knows no lag)
    lagged = RunSpec.build("one_compartment", "100 mg oral every 1 d x 2", until="5 day",
                           overrides={"tlag": "6 h"}).plan()
    assert lagged.breakpoints(5.0) == pytest.approx([0.0, 0.25, 1.25, 5.0])


def test_dose_constructor_rejects_bad_values():
    with pytest.raises(RegimenError, match="not both"):
        Dose(q(1, "mg"), "iv", duration=q(1, "h"), rate=q(1, "mg/h"))
    with pytest.raises(RegimenError, match="does not match"):
        Dose(q(1, "mg"), "iv", rate=q(1, "nmol/h"))
    with pytest.raises(RegimenError, match="route"):
        Dose(q(1, "mg"), "IV")
    with pytest.raises(RegimenError, match="per body weight"):
        Dose(q(5, "percent"), "iv")
    with pytest.raises(RegimenError, match="finite"):
        Dose(q(math.inf, "mg"), "iv")
    assert Dose("10 µg/kg", "iv") == Dose(q(10, "ug/kg"), "iv")


# ----------------------------------------------------------------------------- text forms
def test_none_and_repr():
    assert Regimen.parse("") == Regimen.parse("none") == Regimen.parse(" NONE ") == Regimen.none()
    assert str(Regimen.none()) == "none"
    assert Regimen.none().administrations(10) == ()
    r = Regimen.parse(POM)
    assert repr(r) == f"Regimen.parse({POM!r})"


def test_spelling_variants_are_equivalent():
    a = Regimen.parse("10 mg / kg IV over 60 min every 7 days x 4")
    b = Regimen.parse("10 mg/kg iv over 60 min EVERY 7 day X4")
    assert a == b
    c1 = Regimen.parse("4 mg oral on days 1,2,3,4 of 28 day cycles x 2")
    c2 = Regimen.parse("4 mg oral On Days 1-4 of 28-day cycle x2")
    assert c1 == c2 and str(c1) == "4 mg oral on days 1-4 of 28-day cycles x 2"


def test_pickle_round_trip():
    r = Regimen.parse(f"{ICARIA}; {POM}; 3 nmol sc at 2 nmol/h every 2 weeks for 1 year")
    again = pickle.loads(pickle.dumps(r))
    assert again == r and hash(again) == hash(r)
    assert again.administrations(200) == r.administrations(200)


# ----------------------------------------------------------------------------- frequency words
# (text, until, dose times in days worked out by hand from the words' meanings: QD/daily 24 h,
# BID 12 h, TID 8 h, QID 6 h, QW/weekly 7 d, every other day 2 d, Q<N>H N hours, ...)
FREQUENCY_CASES = [
    ("100 mg oral daily x 7", 60, [0, 1, 2, 3, 4, 5, 6]),
    ("100 mg oral QD x 3", 60, [0, 1, 2]),
    ("100 mg oral qd x 3", 60, [0, 1, 2]),
    ("100 mg oral once daily for 3 days", 60, [0, 1, 2]),
    ("100 mg po q24h x 7", 60, [0, 1, 2, 3, 4, 5, 6]),
    ("100 mg oral BID x 4", 60, [0, 0.5, 1, 1.5]),
    ("100 mg oral twice daily for 2 d", 60, [0, 0.5, 1, 1.5]),
    ("100 mg oral TID x 4", 60, [0, 1 / 3, 2 / 3, 1]),
    ("100 mg oral three times daily x 2", 60, [0, 1 / 3]),
    ("100 mg oral QID x 5", 60, [0, 0.25, 0.5, 0.75, 1]),
    ("100 mg oral four times daily x 2", 60, [0, 0.25]),
    ("100 mg oral q8h for 1 d", 60, [0, 1 / 3, 2 / 3]),
    ("100 mg oral Q12H x 3", 60, [0, 0.5, 1]),
    ("100 mg oral q6h x 2", 60, [0, 0.25]),
    ("100 mg oral q2d x 3", 60, [0, 2, 4]),
    ("100 mg oral every other day x 4", 60, [0, 2, 4, 6]),
    ("100 mg oral QOD x 3", 60, [0, 2, 4]),
    ("100 mg iv QW x 3", 60, [0, 7, 14]),
    ("100 mg sc weekly for 4 weeks", 60, [0, 7, 14, 21]),
    ("100 mg sc every other week x 3", 60, [0, 14, 28]),
    ("100 mg iv Q2W x 3", 60, [0, 14, 28]),
    ("100 mg iv q3w x 3", 60, [0, 21, 42]),
    ("100 mg iv Q4W", 100, [0, 28, 56, 84]),
    ("100 mg iv q1w x 2", 60, [0, 7]),
    ("100 mg oral daily", 3.5, [0, 1, 2, 3]),
    # with infusions and sequences: a frequency block spans count x interval, as 'every'
    ("10 mg/kg iv over 1 h QW x 4 then Q2W", 60, [0, 7, 14, 21, 28, 42, 56]),
    ("100 mg oral BID x 2 then daily x 2", 60, [0, 0.5, 1, 2]),
    ("100 mg oral TID x 3 then wait 1 d then 50 mg oral QD x 2", 60, [0, 1 / 3, 2 / 3, 2, 3]),
    ("100 mg iv at 50 mg/h Q3W x 2; 4 mg oral daily x 3", 60, [0, 0, 1, 2, 21]),
    # a plain day list: the days once; the block spans through its last day
    ("100 mg iv on day 1", 60, [0]),
    ("100 mg iv on days 1,8,15", 60, [0, 7, 14]),
    ("100 mg iv on day 1 then 50 mg oral daily x 3", 60, [0, 1, 2, 3]),
    ("100 mg iv on days 1,8 then 50 mg iv on day 1", 60, [0, 7, 8]),
    # a frequency on cycle days: doses a whole number of times a day on each listed day
    ("100 mg oral BID on days 1-3 of 7-day cycles x 2", 60,
     [0, 0.5, 1, 1.5, 2, 2.5, 7, 7.5, 8, 8.5, 9, 9.5]),
    ("100 mg oral TID on day 2", 60, [1, 4 / 3, 5 / 3]),  # exact times, rounded once
    ("100 mg oral q12h on days 1,3", 60, [0, 0.5, 2, 2.5]),
    ("4 mg oral daily on days 1-3 of 5-day cycles", 12, [0, 1, 2, 5, 6, 7, 10, 11]),
]


@pytest.mark.parametrize(("text", "until", "expected"), FREQUENCY_CASES,
                         ids=[c[0] for c in FREQUENCY_CASES])
def test_frequency_words_give_the_dose_times_worked_out_by_hand(text, until, expected):
    r = Regimen.parse(text)
    assert times(r, until) == [float(t) for t in expected]
    assert r.count_before(until) == len(expected)
    assert Regimen.parse(str(r)) == r


def test_str_keeps_the_frequency_word_in_its_usual_spelling():
    # abbreviations in capitals, words in lower case, whatever the case typed
    assert str(Regimen.parse("100 mg oral bid x 14")) == "100 mg oral BID x 14"
    assert str(Regimen.parse("100 mg PO q08h X7")) == "100 mg po Q8H x 7"
    assert str(Regimen.parse("100 mg oral Every Other Day x 3")) == \
        "100 mg oral every other day x 3"
    assert str(Regimen.parse("1250 mg/m^2 oral Bid on Days 1-14 of 21-day cycles")) == \
        "1250 mg/m2 oral BID on days 1-14 of 21-day cycles"
    assert str(Regimen.parse("100 mg iv on DAY 1")) == "100 mg iv on day 1"
    assert str(Regimen.parse("100 mg iv on days 1 of 21-day cycles x 3")) == \
        "100 mg iv on day 1 of 21-day cycles x 3"


def test_equality_compares_the_written_frequency_not_the_dose_times():
    bid, every = Regimen.parse("100 mg oral BID x 14"), Regimen.parse("100 mg oral every 12 h x 14")
    assert bid != every and times(bid, 30) == times(every, 30)
    assert bid == Regimen.parse("100 mg oral bid x14") and hash(bid) == hash(
        Regimen.parse("100 mg oral bid x14"))
    assert Regimen.parse("1 mg iv QD") != Regimen.parse("1 mg iv daily")  # two spellings
    assert Regimen.parse("1 mg iv q2w") == Regimen.parse("1 mg iv Q2W")
    # a day list once is not a bare dose, although both give one dose at 0: its span is a day
    assert Regimen.parse("1 mg iv on day 1") != Regimen.parse("1 mg iv")


def test_blocks_with_a_frequency_from_the_api():
    dose = Dose(q(100, "mg"), "oral")
    parsed = Regimen.parse("100 mg oral BID x 14").sequences[0][0]
    assert Every(dose, frequency="bid", count=14) == parsed
    assert Every(dose, q(12, "h"), 14, frequency="BID") == parsed
    assert Every(dose, q(0.5, "d"), 14, frequency="BID") == parsed  # the same time: kept as 12 h
    assert parsed.interval == q(12, "h") and parsed.frequency == "BID"
    with pytest.raises(RegimenError, match="'BID' means every 12 h, not every 8 h"):
        Every(dose, q(8, "h"), frequency="BID")
    with pytest.raises(RegimenError, match="needs a dosing interval"):
        Every(dose)
    with pytest.raises(RegimenError, match="unknown frequency 'fortnightly'"):
        Every(dose, frequency="fortnightly")
    cycles = Cycles(dose, (1, 2, 3), 7, 2, frequency="bid")
    assert cycles == Regimen.parse("100 mg oral BID on days 1-3 of 7-day cycles x 2").sequences[0][0]
    assert Cycles(dose, (1, 8)) == Regimen.parse("100 mg oral on days 1,8").sequences[0][0]
    with pytest.raises(RegimenError, match="whole number of doses a day"):
        Cycles(dose, (1,), 7, frequency="Q5H")


def test_a_day_list_spans_through_its_last_day_like_one_cycle():
    once = Regimen.parse("4 mg oral on days 1-21 then 8 mg oral on day 1")
    cycle = Regimen.parse("4 mg oral on days 1-21 of 21-day cycles x 1 then 8 mg oral on day 1")
    assert times(once, 60) == times(cycle, 60) == [float(d) for d in range(22)]
    assert once.sequences[0][0].span_days() == 21


def test_a_block_with_a_frequency_counts_doses_without_listing_them():
    capecitabine = Regimen.parse("1250 mg/m2 oral BID on days 1-14 of 21-day cycles")
    for until, n in ((0.5, 1), (13.5, 27), (14, 28), (21, 28), (21.25, 29), (63, 84)):
        assert capecitabine.count_before(until) == n == len(capecitabine.administrations(until))
    hourly = Regimen.parse("1 mg iv q1h")
    with pytest.raises(RegimenError, match="more than the 100,000"):
        hourly.administrations(36525)


TWO_ORALS = """
[model]
name = "two_orals"

[parameters]
V = "3 L"
CL = "0.2 L/day"

[compartments]
central = "V"

[species.C]
compartment = "central"
unit = "nM"
initial = "0 nM"

[reactions.elimination]
equation = "C ->"
rate = "CL*C"

[routes.{first}]
target = "C"

[routes.{second}]
target = "C"
"""


def test_route_synonyms_find_the_models_route():
    from mechsim.runspec import RunSpec

    def routes_of(model, text):
        return [e.route for e in RunSpec.build(model, text, until="30 day").events()]

    assert routes_of("one_compartment", "100 mg po q24h x 2") == ["oral", "oral"]
    assert routes_of("one_compartment", "100 mg PO; 5 mg intravenous") == ["oral", "iv"]
    assert routes_of("cd40_apc", "10 mg/kg subcut QW x 2") == ["sc", "sc"]
    assert routes_of("cd40_apc", "10 mg/kg Subcutaneous") == ["sc"]
    with pytest.raises(RegimenError, match=r"^model cd40_apc has no dosing route 'po' \(nor its "
                                           r"synonym oral; routes: iv, sc\)$"):
        routes_of("cd40_apc", "100 mg po")
    with pytest.raises(RegimenError, match=r"no dosing route 'im' \(nor its synonym "
                                           r"intramuscular; routes: iv, oral\)$"):
        routes_of("one_compartment", "100 mg im")
    with pytest.raises(RegimenError, match=r"no dosing route 'ip' \(routes: iv, oral\)$"):
        routes_of("one_compartment", "100 mg ip")


def test_a_route_of_the_written_name_wins_and_two_synonyms_are_ambiguous(write_model):
    from mechsim.runspec import RunSpec

    exact = write_model(TWO_ORALS.format(first="oral", second="po"))
    assert [e.route for e in RunSpec.build(exact, "1 nmol po; 1 nmol oral", until="1 day")
            .events()] == ["po", "oral"]
    both = write_model(TWO_ORALS.format(first="sc", second="subcut"), "both.toml")
    with pytest.raises(RegimenError, match="could be any of the routes sc, subcut"):
        RunSpec.build(both, "1 nmol subcutaneous", until="1 day").events()


def test_a_dose_by_a_synonym_is_the_same_run():
    import mechsim

    po = mechsim.simulate("one_compartment", "100 mg po q24h x 3", until="4 day", every="1 day")
    oral = mechsim.simulate("one_compartment", "100 mg oral every 1 d x 3", until="4 day",
                            every="1 day")
    assert np.array_equal(po["C"].magnitude, oral["C"].magnitude)


@pytest.mark.parametrize("name", ["bid", "daily", "q8h", "qod", "twice", "every"])
def test_a_model_route_cannot_take_a_word_of_the_grammar(name, write_model):
    from mechsim import ValidationError, load_model

    with pytest.raises(ValidationError, match=f"route name '{name}' is a word of the regimen"):
        load_model(write_model(TWO_ORALS.format(first="iv", second=name)))
    with pytest.raises(RegimenError, match="not a keyword or frequency"):
        Dose(q(1, "mg"), name)


def test_the_tables_of_the_regimen_docs_are_what_a_run_prints():
    """docs/regimens.md says every row of its tables was run: tools/regimen_tables.py runs
    them, and the document must hold exactly what it prints (and a row for every word)."""
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    tables = runpy.run_path(str(root / "tools" / "regimen_tables.py"))
    tables["check_complete"]()
    doc = (root / "docs" / "regimens.md").read_text()
    for name in ("examples_table", "words_table", "routes_table"):
        assert tables[name]() in doc, name


BAD = [
    ("10 mL iv", "[length]"),
    ("10 iv", "needs a unit"),
    ("10 foo iv", "unknown unit 'foo'"),
    ("10 mg", "expected a route"),
    ("10 mg over 1 h", "expected a route"),
    ("-10 mg iv", "> 0"),
    ("0 mg iv", "> 0"),
    ("10 % iv", "unexpected character '%'"),
    ("10 mg iv every 0 d", "dosing interval must be > 0"),
    ("10 mg iv every -1 d", "dosing interval must be > 0"),
    ("10 mg iv every 7 m", "must be a time"),
    ("10 mg iv every 7", "needs a unit"),
    ("10 mg iv every 7 d x 0", "whole number >= 1"),
    ("10 mg iv every 7 d x 1.5", "whole number"),
    ("10 mg iv every 7 d for 0 d", "> 0"),
    ("10 mg iv on days 0,8 of 28-day cycles", "whole number >= 1"),
    ("10 mg iv on days 1,29 of 28-day cycles", "outside the 28-day cycle"),
    ("10 mg iv on days 8,1 of 28-day cycles", "increasing order"),
    ("10 mg iv on days 1,1 of 28-day cycles", "increasing order"),
    ("10 mg iv on days 1-5,3 of 28-day cycles", "increasing order"),
    ("10 mg iv on days 5-1 of 28-day cycles", "backwards"),
    ("10 mg iv on days 1 of 0-day cycles", "cycle length"),
    ("10 mg iv on days 1,8 of 28-day", "'cycles'"),
    ("10 mg iv every 7 d extra", "unexpected 'extra'"),
    ("10 mg iv then", "empty block"),
    ("then 10 mg iv", "empty block"),
    ("10 mg iv;", "empty block"),
    ("10 mg iv then then 5 mg iv", "empty block"),
    ("every 7 d", "expected a dose"),
    ("10 mg iv then over 1 h", "needs a timing"),
    ("10 mg iv every 7 d then 5 mg iv", "repeats forever"),
    ("4 mg oral on days 1-21 of 28-day cycles then wait 7 d", "repeats forever"),
    ("10 mg iv at 5 nmol/h", "does not match"),
    ("10 mg/kg iv at 5 mg/h", "does not match"),
    ("10 mg iv over 1 h at 5 mg/h", "must be a time"),
    ("10 mg iv at -1 h", ">= 0"),
    ("wait", "expected a wait time"),
    ("wait 7 d foo", "unexpected 'foo'"),
    ("none; 10 mg iv", "expected a dose"),
    ("__import__('os').system('x')", "unexpected character"),
    ("10 mg iv every 7 d x 2 x 3", "unexpected 'x 3'"),
    ("100 mg po q0h", "frequency 'q0h': the dosing interval must be > 0"),
    ("100 mg po Q0W x 2", "the dosing interval must be > 0"),
    ("100 mg oral BID every 12 h", "two frequencies, 'BID' and 'every 12 h': give one"),
    ("100 mg oral every 12 h BID", "two frequencies, 'every 12 h' and 'BID'"),
    ("100 mg oral QD daily", "two frequencies, 'QD' and 'daily'"),
    ("100 mg oral q24 x 7", "frequency 'q24' needs a time unit: 'q24h' (hours)"),
    ("100 mg oral q2.5h", "take a whole number N"),
    ("100 mg oral twice x 3", "expected a frequency such as 'twice daily'"),
    ("100 mg oral every other month", "'every other day' or 'every other week'"),
    ("100 mg BID", "the route comes before the frequency"),
    ("100 mg oral BID x 0", "whole number >= 1"),
    ("100 mg oral BID x 2 for 1 d", "unexpected 'for 1 d'"),
    ("100 mg oral BID at 2 h", "unexpected 'at 2 h'"),
    ("100 mg oral daily then 5 mg oral", "repeats forever"),
    ("100 mg oral QW on days 1-5 of 28-day cycles", "whole number of doses a day"),
    ("100 mg oral Q5H on days 1-5", "'Q5H' on cycle days must give a whole number"),
    ("100 mg iv on days 1-3 x 2", "give the cycle length"),
    ("100 mg iv on days 1,8 28-day cycles", "expected 'of'"),
    ("then daily x 3", "empty block"),
    ("daily x 3", "expected a dose"),
]


@pytest.mark.parametrize(("text", "phrase"), BAD)
def test_bad_regimens_raise_regimen_error(text, phrase, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    with pytest.raises(RegimenError) as info:
        Regimen.parse(text)
    message = str(info.value)
    assert phrase in message
    assert message.startswith(f"regimen {text!r}: ")  # the message quotes the regimen
    assert "\n" not in message
    assert calls == []  # nothing from the text is ever executed


def test_non_text_is_rejected():
    with pytest.raises(RegimenError):
        Regimen.parse(42)


# ----------------------------------------------------------------------------- properties
UNITS = ["mg", "ug", "g", "nmol", "umol", "mg/kg", "ug/kg", "nmol/kg"]
ROUTES = ["iv", "sc", "oral", "po", "im", "it_2"]
TIME_UNITS = ["h", "d", "week", "min"]
magnitudes = st.one_of(st.integers(1, 5000), st.floats(1e-3, 1e4, allow_nan=False))


@st.composite
def doses(draw):
    unit = draw(st.sampled_from(UNITS))
    amount = q(draw(magnitudes), unit)
    kind = draw(st.sampled_from(["bolus", "duration", "rate"]))
    if kind == "duration":
        return Dose(amount, draw(st.sampled_from(ROUTES)), duration=q(draw(magnitudes), "min"))
    if kind == "rate":
        per = draw(st.sampled_from(["h", "d"]))
        rate = q(draw(magnitudes), f"{unit}/{per}")
        return Dose(amount, draw(st.sampled_from(ROUTES)), rate=rate)
    return Dose(amount, draw(st.sampled_from(ROUTES)))


def times_q(lo=0.5, hi=40.0):
    return st.builds(q, st.one_of(st.integers(1, 40), st.floats(lo, hi)),
                     st.sampled_from(TIME_UNITS))


#: Frequencies as typed (any case), and their intervals in hours worked out by hand.
FREQUENCY_HOURS = {"QD": 24, "daily": 24, "once daily": 24, "BID": 12, "twice daily": 12,
                   "TID": 8, "three times daily": 8, "QID": 6, "four times daily": 6,
                   "QW": 168, "weekly": 168, "QOD": 48, "every other day": 48,
                   "every other week": 336}
# those that give a whole number of doses a day, so they may lead 'on days'
DAILY = [w for w, hours in FREQUENCY_HOURS.items() if 24 % hours == 0]
cased = st.sampled_from([str.lower, str.upper, str.title, lambda w: w])


@st.composite
def frequencies(draw, daily: bool = False):
    """A frequency word or a Q<N>H/Q<N>D/Q<N>W form in any case, with its interval in hours."""
    if draw(st.booleans()):
        word = draw(st.sampled_from(DAILY if daily else list(FREQUENCY_HOURS)))
        return draw(cased)(word), FREQUENCY_HOURS[word]
    if daily:
        n = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]))
        return draw(cased)(f"q{n}h"), n
    n, letter = draw(st.integers(1, 30)), draw(st.sampled_from("hdw"))
    return draw(cased)(f"q{n}{letter}"), n * {"h": 1, "d": 24, "w": 168}[letter]


@st.composite
def blocks(draw, dose, finite: bool):
    kind = draw(st.sampled_from(["once", "every", "cycles", "wait", "frequency", "days"]))
    if kind == "frequency":
        ending = draw(st.sampled_from(["count", "for"] if finite else ["count", "for", "open"]))
        return Every(dose, count=draw(st.integers(1, 6)) if ending == "count" else None,
                     length=draw(times_q()) if ending == "for" else None,
                     frequency=draw(frequencies())[0])
    frequency = draw(st.none() | frequencies(daily=True).map(lambda f: f[0]))
    if kind == "days":  # a plain day list: once, no cycle
        days = tuple(sorted(draw(st.sets(st.integers(1, 35), min_size=1, max_size=8))))
        return Cycles(dose, days, frequency=frequency)
    if kind == "once":
        return Once(dose, draw(st.none() | st.builds(q, st.integers(0, 48), st.just("h"))))
    if kind == "wait":
        return Wait(draw(times_q()))
    ending = draw(st.sampled_from(["count", "for"] if finite else ["count", "for", "open"]))
    count = draw(st.integers(1, 6)) if ending == "count" else None
    if kind == "every":
        length = draw(times_q()) if ending == "for" else None
        return Every(dose, q(draw(st.integers(1, 14)), draw(st.sampled_from(["d", "week"]))),
                     count, length)
    if ending == "for":  # cycles end by a count only
        count = draw(st.integers(1, 6))
    cycle = draw(st.integers(1, 35))
    days = tuple(sorted(draw(st.sets(st.integers(1, cycle), min_size=1, max_size=8))))
    return Cycles(dose, days, cycle, count, frequency)


@st.composite
def sequences(draw):
    n = draw(st.integers(1, 4))
    out, dose = [], draw(doses())
    for i in range(n):
        if draw(st.booleans()):  # new dose sometimes, else reuse: exercises dose omission
            dose = draw(doses())
        out.append(draw(blocks(dose, finite=i + 1 < n)))
    return tuple(out)


regimens = st.builds(Regimen, st.lists(sequences(), min_size=0, max_size=3).map(tuple))


@examples(100)
@given(regimens)
def test_text_round_trip(r):
    text = str(r)
    again = Regimen.parse(text)
    assert again == r
    assert str(again) == text
    assert again.administrations(120) == r.administrations(120)
    assert pickle.loads(pickle.dumps(r)) == r


@examples(100)
@given(regimens, st.floats(0, 200))
# found by the thorough profile: the wait's exact decimal is below the float `until`, so the
# dose landed on `until` once rounded
@example(Regimen.parse("wait 1.802923632172316 d then 1 mg iv"), 1.802923632172316)
def test_administrations_sorted_and_in_range(r, until):
    adm = r.administrations(until)
    assert all(0 <= a.time < until for a in adm)
    assert [a.time for a in adm] == sorted(a.time for a in adm)
    assert r.count_before(until) == len(adm)  # the count that guards the dose limit


@examples(100)
@given(frequencies(), st.integers(1, 50), st.sampled_from(["oral", "po", "iv", "sc"]))
def test_a_frequency_gives_doses_its_interval_apart(frequency, n, route):
    word, hours = frequency
    r = Regimen.parse(f"5 mg {route} {word} x {n}")
    expected = [float(Fraction(k * hours, 24)) for k in range(n)]  # exact, rounded once
    assert times(r, math.inf) == expected
    assert Regimen.parse(str(r)) == r and r.sequences[0][0].span_days() == Fraction(n * hours, 24)


@examples(100)
@given(frequencies(daily=True), st.integers(1, 28), st.integers(0, 3), st.floats(0, 200))
def test_a_frequency_on_cycle_days_doses_evenly_through_each_day(frequency, cycle, first,
                                                                  until):
    word, hours = frequency
    days = list(range(min(first + 1, cycle), cycle + 1, 3))
    text = f"1 mg oral {word} on days {','.join(map(str, days))} of {cycle}-day cycles"
    r = Regimen.parse(text)
    per_day = 24 // hours
    expected = sorted(float(c * cycle + d - 1 + Fraction(j, per_day))
                      for c in range(int(until // cycle) + 1) for d in days
                      for j in range(per_day))
    assert times(r, until) == [t for t in expected if t < until]
    assert r.count_before(until) == len(times(r, until))


def test_dose_times_carry_no_rounding_from_dose_to_dose():
    # 1 min is 1/1440 day: the 1441st dose falls exactly on day 1 and is left out
    minutes = Regimen.parse("1 mg iv every 1 min x 1000000000").administrations(1.0)
    assert len(minutes) == 1440 and minutes[-1].time == 1439 / 1440
    # 0.1 h is not a binary fraction: each time is rounded once, from the exact value
    tenths = Regimen.parse("1 mg iv every 0.1 h for 1 day").administrations(5.0)
    assert [a.time for a in tenths] == [k / 240 for k in range(240)]
    chained = Regimen.parse("1 mg iv every 1 min x 720 then every 1 min x 720 then 2 mg iv")
    assert chained.administrations(2.0)[-1].time == 1.0


def test_too_many_doses_are_refused_at_once_without_listing_them():
    regimen = Regimen.parse("10 mg iv every 1 h x 1000000000")
    with pytest.raises(RegimenError, match=r"gives 876,600 doses before day 36525, more than "
                                           r"the 100,000 one run may have"):
        regimen.administrations(36525)
    assert len(regimen.administrations(4000)) == 96_000  # below the limit: fine


@pytest.mark.parametrize("model, text, until, varied", [
    ("one_compartment", "100 mg oral every 1 d x 4; 50 mg iv over 2 h at 12 h", "3.5 day",
     (("V", 5.0, 50.0), ("F", 0.1, 1.0), ("tlag", 0.0, 0.7))),
    ("cd38_myeloma", "10 mg/kg iv over 1 h every 7 d x 3; 56 mg/m2 carfilzomib every 7 d x 2;"
     " 4 mg oral every 1 d x 5", "20 day",
     (("WT", 40.0e3, 120.0e3), ("BSA", 1.4e2, 2.4e2), ("V1_ref", 2.0, 6.0))),
])
def test_the_plans_of_a_population_are_the_plans_of_each_run_alone(model, text, until,
                                                                     varied):
    """dose_plans computes every row's plan at once; each must be bit for bit the plan of
    that row computed alone, whatever rows it came with: rows of other weights, surface
    areas, volumes and bioavailabilities, and rows whose lag pushes a dose past `until`."""
    from mechsim.doseplan import dose_plan, dose_plans
    from mechsim.runspec import RunSpec

    spec = RunSpec.build(model, text, until=until)
    cm = spec.compiled
    rng = np.random.default_rng(7)
    rows = np.tile(spec.parameters, (40, 1))
    for name, low, high in varied:  # canonical units: g, dm2, L, day
        rows[:, cm.parameter_names.index(name)] = rng.uniform(low, high, 40)
    events = spec.events()
    together = dose_plans(cm, events, rows, spec.until)
    counts = set()
    for row, plan in zip(rows, together):
        alone = dose_plan(cm, events, row, spec.until)
        for field in ("bolus_table", "infusion_table", "bolus_amounts",
                      "infusion_amount_rates"):
            assert np.array_equal(getattr(plan, field), getattr(alone, field)), field
        counts.add(len(plan.bolus_table))
    assert len(plan.infusion_table) > 0 and len(plan.bolus_table) > 0
    if model == "one_compartment":
        assert len(counts) > 1  # some lags moved the day-3 dose past `until`


def test_segments_add_overlapping_infusions_and_boluses_at_one_time():
    """The solver's view of a plan, checked against a hand computation: two infusions that
    overlap add their rates on the shared segment; two boluses at one time add their jumps;
    a bolus at `until` is left out."""
    from mechsim.doseplan import DosePlan

    plan = DosePlan.of(boluses=[(0.0, 0, 1.0), (2.0, 1, 3.0), (2.0, 1, 4.0), (5.0, 0, 9.0)],
                       infusions=[(1.0, 3.0, 0, 10.0), (2.0, 4.0, 0, 5.0)])
    starts, ends, rates, jumps, is_dose = plan.segments(5.0, 2)
    assert starts.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ends.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert rates[:, 0].tolist() == [0.0, 10.0, 15.0, 5.0, 0.0]
    assert rates[:, 1].tolist() == [0.0] * 5
    assert jumps.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 7.0], [0.0, 0.0], [0.0, 0.0]]
    assert is_dose.tolist() == [True, True, True, False, False]
    assert plan.boluses[1] == (2.0, 1, 3.0) and isinstance(plan.boluses[1][1], int)
