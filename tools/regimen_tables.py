"""Print the tables of docs/regimens.md from real runs: each row's text is parsed, written back
with ``str()`` and its dose times listed by ``administrations(until)``.

    python tools/regimen_tables.py            # all tables, as pasted into docs/regimens.md

tests/test_dosing.py checks that the document holds exactly what this prints, so the doc's
"every row was run" stays true.
"""

from __future__ import annotations

import sys

from mechsim.dosing import FREQUENCIES, ROUTE_SYNONYMS, Regimen
from mechsim.units import format_quantity

#: (text, until in days) of the examples table.
EXAMPLES = [
    ("100 mg iv", 60),
    ("10 mg/kg iv", 60),
    ("100 nmol sc", 60),
    ("100 mg iv over 1 h", 60),
    ("100 mg iv at 50 mg/h", 60),
    ("10 mg/kg iv at 5 mg/kg/h", 60),
    ("56 mg/m^2 iv over 30 min", 60),
    ("100 mg iv at 12 h", 60),
    ("100 mg iv every 7 days x 4", 60),
    ("100 mg iv every 7 days x4", 60),
    ("100 mg sc every 2 weeks for 8 weeks", 60),
    ("100 mg sc every 2 wk for 15 days", 60),
    ("100 mg iv every 7 days", 30),
    ("1 g oral every 8 h x 3", 60),
    ("4 mg oral on days 1-21 of 28-day cycles x 2", 60),
    ("100 mg iv on day 1 of 21-day cycles x 3", 100),
    ("100 mg iv on days 1-5,8-12 of 21-day cycle x 1", 60),
    ("1250 mg/m2 oral BID on days 1-14 of 21-day cycles", 30),
    ("100 mg iv on day 1", 60),
    ("100 mg iv on days 1,8,15", 60),
    ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 then on days 1,15 of "
     "28-day cycles", 120),
    ("10 mg/kg iv over 1 h QW x 4 then Q2W", 60),
    ("100 mg iv every 7 days x 3 then 50 mg iv every 14 days x 2", 100),
    ("100 mg iv every 7 days x 3 then wait 14 days then 50 mg iv at 25 mg/h every 14 days x 2",
     100),
    ("100 mg iv over 1 h every 7 days x 2 then over 2 h every 14 days x 2", 100),
    ("100 mg iv at 2 days then 50 mg sc every 7 days x 2", 60),
    ("wait 7 days then 100 mg iv", 60),
    ("100 mg iv then 50 mg iv every 7 days x 2", 60),
    ("100 mg iv on day 1 then 50 mg oral daily x 3", 60),
    ("100 mg iv; 50 mg sc every 1 day x 3", 60),
    ("4 mg oral on days 1-21 of 28-day cycles; 40 mg oral on days 1,8,15,22 of 28-day cycles",
     30),
    ("none", 60),
]

#: (the word as the table names it, an example using it, until in days): one row per word of
#: FREQUENCIES and per Q<N> form.
WORDS = [
    ("QD", "100 mg oral QD x 7", 60),
    ("daily", "100 mg oral daily x 7", 60),
    ("once daily", "100 mg oral once daily for 3 days", 60),
    ("BID", "100 mg oral BID x 4", 60),
    ("twice daily", "100 mg oral twice daily for 2 days", 60),
    ("TID", "100 mg oral TID x 4", 60),
    ("three times daily", "100 mg oral three times daily x 3", 60),
    ("QID", "100 mg oral QID x 5", 60),
    ("four times daily", "100 mg oral four times daily x 4", 60),
    ("QW", "10 mg/kg iv over 1 h QW x 4", 60),
    ("weekly", "100 mg sc weekly for 4 weeks", 60),
    ("QOD", "100 mg oral QOD x 4", 60),
    ("every other day", "100 mg oral every other day x 4", 60),
    ("every other week", "100 mg sc every other week x 3", 60),
    ("Q<N>H", "100 mg po q8h x 4", 60),
    ("Q<N>H", "100 mg po q24h x 7", 60),
    ("Q<N>D", "100 mg oral Q2D x 3", 60),
    ("Q<N>W", "10 mg/kg iv Q2W x 3", 60),
    ("Q<N>W", "10 mg/kg iv Q3W x 3", 60),
    ("Q<N>W", "10 mg/kg iv Q4W x 3", 100),
]


def dose_times(regimen: Regimen, until: float) -> str:
    """The dose times as the tables show them: all of a short list, else its ends."""
    found = [f"{a.time:g}" for a in regimen.administrations(until)]
    if not found:
        return "none"
    if len(found) > 12:
        return f"{', '.join(found[:6])}, …, {', '.join(found[-2:])} ({len(found)} doses)"
    return ", ".join(found)


def examples_table() -> str:
    rows = ["| text | `str(Regimen.parse(text))` | `administrations(until)`: dose times, day |",
            "|---|---|---|"]
    for text, until in EXAMPLES:
        r = Regimen.parse(text)
        rows.append(f"| `{text}` | `{r}` | {dose_times(r, until)} (until = {until:g}) |")
    return "\n".join(rows) + "\n"


def words_table() -> str:
    rows = ["| word | means | example | `str(Regimen.parse(text))` | dose times, day |",
            "|---|---|---|---|---|"]
    for word, text, until in WORDS:
        r = Regimen.parse(text)
        block = r.sequences[0][0]
        means = f"every {format_quantity(block.interval)}"
        rows.append(f"| `{word}` | {means} | `{text}` | `{r}` | {dose_times(r, until)} "
                    f"(until = {until:g}) |")
    return "\n".join(rows) + "\n"


def routes_table() -> str:
    rows = ["| names of one route (a dose written with any finds the model's route) |", "|---|"]
    rows += [f"| {', '.join(f'`{n}`' for n in sorted(group, key=len))} |"
             for group in ROUTE_SYNONYMS]
    return "\n".join(rows) + "\n"


def check_complete() -> None:
    """Every frequency word has a row."""
    missing = set(FREQUENCIES) - {word for word, _, _ in WORDS}
    if missing:
        raise SystemExit(f"no row for {', '.join(sorted(missing))}")


if __name__ == "__main__":
    check_complete()
    sys.stdout.write(f"{examples_table()}\n{words_table()}\n{routes_table()}")
