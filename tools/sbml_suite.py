"""Run the SBML Test Suite's semantic cases through mechsim's SBML importer and simulator.

    python tools/sbml_suite.py /path/to/sbml-test-suite/cases [--jobs 2] [--cases 1-200]
        [--tags EventNoDelay,Concentration] [--csv outcomes.csv] [--timeout 60]

Each case folder ``NNNNN/`` holds the model (``NNNNN-sbml-l3v2.xml``, else the highest level
present), ``NNNNN-settings.txt`` and ``NNNNN-results.csv``.  A case is

- **pass**: every compared value obeys the suite's rule
  ``|simulated - expected| <= absolute + relative * |expected|``;
- **wrong**: it simulated, and some value does not (a failure, never a refusal);
- **refused**: mechsim raised one of its own errors (not a solver error) with a message,
  such as an unsupported SBML construct;
- **crash**: anything else: a solver error, an unexpected exception, a worker process that
  died, or a case that ran longer than ``--timeout`` seconds.

Cases of type ``FluxBalanceSteadyState`` and any that are not time courses are skipped.
Runs use method="LSODA" with rtol 1e-10 (the suite's tolerances are 1e-4 relative or
coarser).  Cases run in worker processes (at most ``--jobs``, default 2), each case with a
timeout; a worker that hangs or dies is replaced.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import re
import sys
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("l3v2", "l3v1", "l2v5", "l2v4", "l2v3", "l2v2", "l2v1", "l1v2")
RTOL = 1e-10
ATOL = 1e-14


@dataclass(frozen=True)
class Case:
    number: int
    folder: str
    test_tags: tuple[str, ...]
    component_tags: tuple[str, ...]
    test_type: str


@dataclass(frozen=True)
class Outcome:
    number: int
    outcome: str  # pass, wrong, refused, crash
    detail: str
    seconds: float


# ---------------------------------------------------------------------------- reading a case
def read_case(folder: Path) -> Case:
    number = int(folder.name)
    text = (folder / f"{folder.name}-model.m").read_text(errors="replace")

    def tags(key):
        found = re.search(rf"{key}:[ \t]*(.*)", text)
        return tuple(t.strip() for t in found.group(1).split(",") if t.strip()) if found \
            else ()

    test_type = re.search(r"testType:\s*(\S+)", text)
    return Case(number, str(folder), tags("testTags"), tags("componentTags"),
                test_type.group(1) if test_type else "")


def read_settings(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def model_file(folder: Path) -> Path:
    for level in LEVELS:
        path = folder / f"{folder.name}-sbml-{level}.xml"
        if path.exists():
            return path
    raise FileNotFoundError(f"no SBML file in {folder}")


def skipped(case: Case) -> str | None:
    if "FluxBalanceSteadyState" in case.test_type or "FluxBalanceSteadyState" in \
            case.component_tags + case.test_tags:
        return "FluxBalanceSteadyState"
    if case.test_type != "TimeCourse":
        return f"testType {case.test_type or '?'}"
    return None


# ----------------------------------------------------------------------------- running one
def run_case(folder: str) -> tuple[str, str]:
    """(outcome, detail) of one case, in this process."""
    import numpy as np

    from mechsim.errors import MechsimError, SolverError
    from mechsim.io.sbml_import import import_sbml

    folder = Path(folder)
    settings = read_settings(folder / f"{folder.name}-settings.txt")
    try:
        imported = import_sbml(model_file(folder))
    except SolverError as exc:
        return "crash", f"SolverError: {exc}".splitlines()[0]
    except MechsimError as exc:
        return "refused", str(exc).splitlines()[0]
    try:
        table = imported_values(imported, settings)
    except SolverError as exc:
        return "crash", f"SolverError: {exc}".splitlines()[0]
    except MechsimError as exc:
        return "refused", str(exc).splitlines()[0]
    expected = read_expected(folder / f"{folder.name}-results.csv")
    atol = float(settings.get("absolute") or 0.0)
    rtol = float(settings.get("relative") or 0.0)
    worst = None
    for name, column in expected.items():
        if name.lower() == "time":
            continue
        got = table.get(name)
        if got is None:
            return "crash", f"variable {name} not found in the result"
        want = np.asarray(column)
        bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
        bad &= ~(np.isnan(want) & np.isnan(got))
        bad &= ~(np.isinf(want) & (got == want))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            worst = worst or (f"{name} at t = {expected['time'][k]:g}: got {got[k]:.10g}, "
                              f"expected {want[k]:.10g}")
    if worst:
        return "wrong", worst
    return "pass", ""


def read_expected(path: Path) -> dict:
    import numpy as np

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    data = np.array([[float(x) if x.strip() not in ("", "NaN", "nan") else math.nan
                      for x in row] for row in rows[1:] if row], dtype=float)
    return {("time" if h.lower() == "time" else h): data[:, k] for k, h in enumerate(header)}


def imported_values(imported, settings: dict) -> dict:
    """Simulate the imported model on the case's grid; each requested variable's values in
    its SBML unit, as an amount or a concentration as the settings ask."""
    import numpy as np

    import mechsim

    model = imported.model
    start = float(settings.get("start") or 0.0)
    duration = float(settings["duration"])
    steps = int(float(settings["steps"]))
    times = start + np.arange(steps + 1) * (duration / steps)
    unit = model.time_unit
    res = mechsim.simulate(model, until=mechsim.units.ureg.Quantity(start + duration, unit),
                           times=mechsim.units.ureg.Quantity(times, unit), rtol=RTOL,
                           atol=ATOL, method="LSODA")
    amounts = {v.strip() for v in settings.get("amount", "").split(",") if v.strip()}
    concs = {v.strip() for v in settings.get("concentration", "").split(",") if v.strip()}
    wanted = [v.strip() for v in settings.get("variables", "").split(",") if v.strip()]
    out = {}
    for sid in wanted:
        kind = "amount" if sid in amounts else "concentration" if sid in concs else None
        values = imported.values(res, sid, kind)
        out[sid] = np.broadcast_to(np.asarray(values, dtype=float), times.shape)
    return out


# -------------------------------------------------------------------------- worker processes
def _worker(conn) -> None:
    import warnings

    warnings.simplefilter("ignore")
    while True:
        folder = conn.recv()
        if folder is None:
            return
        try:
            result = run_case(folder)
        except Exception as exc:  # a crash is an outcome to count
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            first = str(exc).splitlines()[0] if str(exc) else ""
            result = ("crash", f"{type(exc).__name__}: {first} "
                      f"({Path(tb.filename).name}:{tb.lineno})")
        conn.send(result)


class Worker:
    def __init__(self, ctx):
        self.ctx = ctx
        self.start()

    def start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        self.case = None
        self.began = 0.0

    def give(self, case: Case):
        self.case = case
        self.began = time.monotonic()
        self.conn.send(case.folder)

    def restart(self):
        self.proc.kill()
        self.proc.join()
        self.start()


def run_all(cases: list[Case], jobs: int, timeout: float, progress=None) -> list[Outcome]:
    ctx = mp.get_context("spawn")
    workers = [Worker(ctx) for _ in range(max(1, min(jobs, len(cases), 2)))]
    todo = list(cases)
    results: list[Outcome] = []
    try:
        while todo or any(w.case for w in workers):
            for w in workers:
                if w.case is None and todo:
                    w.give(todo.pop(0))
            for w in workers:
                if w.case is None:
                    continue
                case, elapsed = w.case, time.monotonic() - w.began
                outcome = None
                if w.conn.poll(0.01):
                    try:
                        kind, detail = w.conn.recv()
                    except EOFError:
                        kind, detail = "crash", "worker process died"
                        w.restart()
                    outcome = Outcome(case.number, kind, detail, elapsed)
                elif not w.proc.is_alive():
                    outcome = Outcome(case.number, "crash",
                                      f"worker process died (exit code {w.proc.exitcode})",
                                      elapsed)
                    w.restart()
                elif elapsed > timeout:
                    outcome = Outcome(case.number, "crash", f"timeout after {timeout:g} s",
                                      elapsed)
                    w.restart()
                if outcome is not None:
                    w.case = None
                    results.append(outcome)
                    if progress:
                        progress(outcome, len(results), len(cases))
    finally:
        for w in workers:
            if w.proc.is_alive():
                w.conn.send(None)
                w.proc.join(2)
                if w.proc.is_alive():
                    w.proc.kill()
    return sorted(results, key=lambda o: o.number)


# --------------------------------------------------------------------------------- reporting
KINDS = ("pass", "wrong", "refused", "crash")


def summary(cases: list[Case], outcomes: list[Outcome], skipped_count: int) -> str:
    by_case = {o.number: o for o in outcomes}
    lines = []
    total = Counter(o.outcome for o in outcomes)
    n = len(outcomes)
    lines.append(f"time-course cases run: {n} (skipped: {skipped_count})")
    lines.append("totals: " + ", ".join(
        f"{k} {total[k]} ({100 * total[k] / n:.1f} %)" if n else f"{k} 0" for k in KINDS))
    for title, attr in (("testTag", "test_tags"), ("componentTag", "component_tags")):
        table: dict[str, Counter] = defaultdict(Counter)
        for c in cases:
            if c.number in by_case:
                for tag in getattr(c, attr):
                    table[tag][by_case[c.number].outcome] += 1
        lines.append("")
        lines.append(f"{title:<32} {'cases':>6} {'pass':>6} {'wrong':>6} {'refused':>8} "
                     f"{'crash':>6} {'pass %':>7}")
        for tag in sorted(table):
            row = table[tag]
            cnt = sum(row.values())
            lines.append(f"{tag:<32} {cnt:>6} {row['pass']:>6} {row['wrong']:>6} "
                         f"{row['refused']:>8} {row['crash']:>6} "
                         f"{100 * row['pass'] / cnt:>6.1f}")
    for kind in ("refused", "wrong", "crash"):
        reasons = Counter(_reason(o.detail) for o in outcomes if o.outcome == kind)
        if reasons:
            lines.append("")
            lines.append(f"{kind}: first line, most common first")
            for reason, count in reasons.most_common():
                lines.append(f"  {count:>5}  {reason}")
    listed = [o for o in outcomes if o.outcome in ("wrong", "crash")]
    if listed:
        lines.append("")
        lines.append("wrong and crash cases")
        for o in listed:
            lines.append(f"  {o.number:05d} {o.outcome:<6} {o.detail}")
    return "\n".join(lines)


def _reason(detail: str) -> str:
    """A refusal's message without the file and the ids, so like refusals group together."""
    text = re.sub(r"^.*?\.xml: ", "", detail)
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[-+]?\d+)?\b", "N", text)
    return text[:160]


def parse_ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part.strip():
            out.add(int(part))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="the suite's cases folder (holding 00001/, 00002/, ...)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2)")
    ap.add_argument("--cases", help="case numbers, e.g. 1-200,305")
    ap.add_argument("--tags", help="only cases with one of these test or component tags")
    ap.add_argument("--csv", help="write per-case outcomes to this CSV file")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    root = Path(args.folder)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    wanted = parse_ranges(args.cases) if args.cases else None
    tags = {t.strip() for t in args.tags.split(",")} if args.tags else None
    cases, n_skipped = [], 0
    for folder in folders:
        if wanted is not None and int(folder.name) not in wanted:
            continue
        case = read_case(folder)
        if tags and not tags & set(case.test_tags + case.component_tags):
            continue
        if skipped(case):
            n_skipped += 1
            continue
        cases.append(case)

    def progress(o: Outcome, done: int, total: int):
        if not args.quiet:
            print(f"[{done}/{total}] {o.number:05d} {o.outcome:<7} {o.detail[:150]}",
                  file=sys.stderr, flush=True)

    began = time.monotonic()
    outcomes = run_all(cases, min(args.jobs, 2), args.timeout, progress)
    print(summary(cases, outcomes, n_skipped))
    print(f"\nwall time {time.monotonic() - began:.0f} s, {min(args.jobs, 2)} processes")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case", "outcome", "detail", "seconds", "testTags", "componentTags"])
            by_number = {c.number: c for c in cases}
            for o in outcomes:
                c = by_number[o.number]
                w.writerow([f"{o.number:05d}", o.outcome, o.detail, f"{o.seconds:.2f}",
                            " ".join(c.test_tags), " ".join(c.component_tags)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
