"""Would a block of patients integrated in lockstep beat patients integrated one by one?

Issue 21 asks to evaluate running many patients in one compiled loop over a block of
patients, "vectorised across patients, so the CPU's vector units work on several patients
at once".  Vector units apply one instruction to K values (K = 4 doubles with AVX2, 8 with
AVX-512), so the K patients of a block must execute the same instructions: the same step
size, order, Newton iterations, accepted and rejected steps.  That is lockstep integration,
and its price is that every patient takes the steps the most demanding patient of its block
needs.  This script measures that price and what lockstep costs before vector units help,
on the benchmark's W3 workload (benchmarks/run.py: the first-generation cd38_myeloma model,
ICARIA isatuximab schedule, a year of daily output, rtol 1e-8, atol 1e-12, 1,000 patients):

1. **alone**: each patient integrated by the shipped engine (``simulate_many``, one
   thread): steps and CPU time per patient.
2. **stacked, K at a time**: the same patients K at a time as one system of K x 12 states
   (K copies of the model's equations, each with one patient's parameters; one NDF
   integration with the shipped kernel).  Its steps are a lockstep integrator's step
   sequence.  Its error norm is the RMS over all K patients' states, looser than each
   patient's own tolerance, so a lockstep integrator that keeps every patient within its
   tolerance needs at least this many steps: the ratio is a lower bound on the price.
   Its time per patient on one thread is lockstep without vector units: shared control
   flow, K times the arithmetic per step.
3. **the bound**: with perfect vector units, each stacked step's arithmetic would cost what
   one patient's does, so the time per patient could fall at most to
   ``steps(stacked) / steps(alone) / K`` of the time alone.
4. **what the compiler does with it**: the model's generated RHS rewritten to loop over
   the K patients of a block (states x patients arrays, the patient innermost, as vector
   units need), compiled by numba, timed per patient against the scalar RHS called K
   times, and its machine code inspected for packed (vector) arithmetic.

Run:  python benchmarks/lanes.py [--patients N] [--lanes 2 4 8]   (about 5 minutes)
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import sympy

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

import mechsim
from mechsim.codegen import compile_def
from mechsim.runspec import RunSpec
from mechsim.solvers import ndf_kernel


def stacked_model(cm, k: int):
    """K copies of a compiled model's equations, lane j's symbols suffixed _j."""
    def rename(symbols, j):
        return {s: sympy.Symbol(f"{s.name}_{j}", real=True) for s in symbols}

    states, params, rhs, jac = [], [], [], []
    n = len(cm.states)
    for j in range(k):
        mapping = {**rename(cm.states, j), **rename(cm.params, j)}
        states += [mapping[s] for s in cm.states]
        params += [mapping[s] for s in cm.params]
        rhs += [e.xreplace(mapping) for e in cm.rhs_exprs]
        jac += [(j * n + r, j * n + c, e.xreplace(mapping)) for r, c, e in cm.jac_entries]
    return dataclasses.replace(
        cm, name=f"{cm.name} x{k}", states=tuple(states), params=tuple(params),
        state_names=tuple(s.name for s in states), parameter_names=tuple(p.name for p in params),
        rhs_exprs=tuple(rhs), jac_entries=tuple(jac), _functions={})


def run_stacked(spec, cm, stacked, rows, k: int):
    """The rows (canonical parameter vectors) K at a time as stacked systems; returns
    (steps per block, thread CPU seconds in all, states (rows, n, times))."""
    n = len(cm.state_names)
    runner = ndf_kernel.chunk_runner(stacked)
    grid = bench.GRID.astype(float)
    steps, cpu = [], 0.0
    out_all = np.empty((len(rows), n, grid.size))
    for lo in range(0, len(rows) - k + 1, k):
        block = rows[lo:lo + k]
        t0 = time.thread_time()
        plans = [spec.plan(row) for row in block]
        segs = [plan.segments(spec.until, n) for plan in plans]
        starts, ends = segs[0][0], segs[0][1]
        assert all(np.array_equal(s[0], starts) for s in segs)  # one schedule, no lag
        rates = np.hstack([s[2] for s in segs])
        jumps = np.hstack([s[3] for s in segs])
        params = ndf_kernel.extended_parameters(stacked, np.concatenate(block))[None, :]
        y0 = np.concatenate([np.asarray(cm.initial_state(row), dtype=float)
                             for row in block])[None, :]
        out = np.empty((1, n * k, grid.size))
        pre = np.empty((len(starts), n * k))
        stats = np.zeros((1, 4))
        status = np.zeros(1, dtype=np.int64)
        runner(params, np.array([0, len(starts)], dtype=np.int64), starts, ends, rates,
               jumps, grid, float(spec.rtol), np.tile(spec.atol, k), y0, out, pre, stats,
               status)
        cpu += time.thread_time() - t0
        assert status[0] == ndf_kernel.OK, status
        steps.append(int(stats[0, 0]))
        out_all[lo:lo + k] = out[0].reshape(k, n, grid.size)
    return np.array(steps), cpu, out_all


class _PerLane(ast.NodeTransformer):
    """``y[i]`` -> ``y[i, k]`` (and p, out): the generated code for the patient k."""

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id in ("y", "p", "out"):
            index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            node.slice = ast.Tuple(elts=[*index, ast.Name("k", ast.Load())], ctx=ast.Load())
        return node


def lane_rhs(cm):
    """The model's compiled RHS and a version looping over the patients of a block (the
    last axis of y, p and out)."""
    import numba

    definition = copy.deepcopy(ndf_kernel._definitions(cm)["rhs"])
    body = [_PerLane().visit(s) for s in definition.body if not isinstance(s, ast.Return)]
    patients = ast.Subscript(ast.Attribute(ast.Name("y", ast.Load()), "shape", ast.Load()),
                             ast.Constant(1), ast.Load())
    definition.body = [ast.For(target=ast.Name("k", ast.Store()),
                               iter=ast.Call(ast.Name("range", ast.Load()), [patients], []),
                               body=body, orelse=[]), ast.Return(ast.Constant(None))]
    definition.name = "rhs_lanes"
    helpers = {**ndf_kernel._helpers(), "range": range}
    lanes = numba.njit(error_model="numpy")(compile_def(ast.fix_missing_locations(definition),
                                                        helpers))
    return ndf_kernel._compiled(cm)["rhs"], lanes


def time_rhs(cm, p, y, k: int, calls: int = 400_000):
    """ns per patient of the block RHS and of the scalar RHS, and the packed (vector)
    arithmetic instructions in the block RHS's machine code."""
    import numba

    scalar, lanes = lane_rhs(cm)

    @numba.njit
    def each(f, ys, ps, outs, reps):
        for _ in range(reps):
            for j in range(ys.shape[0]):
                f(0.0, ys[j], ps[j], outs[j])

    @numba.njit
    def block(f, ys, ps, outs, reps):
        for _ in range(reps):
            f(0.0, ys, ps, outs)

    ys = np.ascontiguousarray(np.tile(y[:, None], (1, k)) * (1 + 0.01 * np.arange(k)))
    ps = np.ascontiguousarray(np.tile(p[:, None], (1, k)))
    out_block, out_each = np.zeros_like(ys), np.zeros((k, len(y)))
    ys_t, ps_t = np.ascontiguousarray(ys.T), np.ascontiguousarray(ps.T)
    reps = calls // k
    times = []
    for fn, args in ((block, (lanes, ys, ps, out_block)), (each, (scalar, ys_t, ps_t,
                                                                  out_each))):
        fn(*args, 10)
        t0 = time.perf_counter()
        fn(*args, reps)
        times.append((time.perf_counter() - t0) / (reps * k) * 1e9)
    assert np.array_equal(out_block, out_each.T)
    asm = next(iter(lanes.inspect_asm().values()))
    packed = sum(1 for line in asm.splitlines()
                 if line.strip().split(" ")[0].split("\t")[0].endswith("pd")
                 and not line.strip().startswith("vmovapd"))
    return times[0], times[1], packed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--lanes", type=int, nargs="+", default=[2, 4, 8])
    args = ap.parse_args(argv)
    inputs = bench.make_inputs(1, args.patients)
    model = mechsim.load_model(bench.MODEL)
    spec = RunSpec.build(model, bench.regimen_text(bench.REFERENCE_DOSE), until="365 day",
                         times=bench.GRID * mechsim.ureg.day, rtol=bench.RTOL,
                         atol=bench.ATOL, method="NDF")
    cm = spec.compiled
    rows = np.tile(spec.parameters, (args.patients, 1))
    for name, values in inputs.patients.items():
        rows[:, cm.parameter_names.index(name)] = values
    ms = bench.Mechsim(inputs)
    ms.many(sweep=False, workers=1)  # compile, warm
    best, alone = np.inf, None
    for _ in range(3):
        t0 = time.thread_time()
        batch = mechsim.simulate_many(model, bench.regimen_text(bench.REFERENCE_DOSE),
                                      parameters=ms.patients, until="365 day",
                                      times=ms.times, rtol=bench.RTOL, atol=bench.ATOL,
                                      method="NDF", workers=1, progress=False)
        best = min(best, time.thread_time() - t0)
        alone = batch
    steps_alone = alone.counters[:, 0].astype(float)
    per_alone = best / args.patients * 1e3
    print(f"W3 population, {args.patients} patients; alone (shipped engine, one thread, "
          f"best of 3): {per_alone:.2f} ms and {steps_alone.mean():.0f} steps per patient")
    print(f"{'K':>3} {'stacked steps':>14} {'/ alone':>8} {'max-of-K':>9} "
          f"{'ms/patient':>11} {'/ alone':>8} {'bound with K-wide SIMD':>24} "
          f"{'max rel. diff':>14}")
    for k in args.lanes:
        stacked = stacked_model(cm, k)
        run_stacked(spec, cm, stacked, rows[:k], k)  # compile
        m = (args.patients // k) * k
        steps, cpu, states = run_stacked(spec, cm, stacked, rows[:m], k)
        blocks_alone = steps_alone[:m].reshape(-1, k)
        price = steps.sum() / blocks_alone.mean(axis=1).sum()
        max_of_k = blocks_alone.max(axis=1).sum() / blocks_alone.mean(axis=1).sum()
        per_patient = cpu / m * 1e3
        big = np.abs(alone.states[:m]) > 1e-4
        diff = np.max(np.abs(states[:m] - alone.states[:m])[big] /
                      np.abs(alone.states[:m])[big])
        print(f"{k:>3} {steps.mean():>14.0f} {price:>8.2f} {max_of_k:>9.2f} "
              f"{per_patient:>11.2f} {per_patient / per_alone:>8.2f} "
              f"{price / k:>24.2f} {diff:>14.1e}")
    print("stacked steps / alone: the lockstep price (a lower bound); max-of-K: the "
          "steps of each block's most demanding patient / the mean; bound: the least "
          "time per patient / alone that perfect K-wide vector units could give")
    p = ndf_kernel.extended_parameters(cm, spec.parameters)
    y = np.asarray(cm.initial_state(spec.parameters), dtype=float) + 1.0
    print("\nthe RHS of K patients in one compiled loop (numba), per patient:")
    for k in args.lanes:
        block, each, packed = time_rhs(cm, p, y, k)
        print(f"  K={k}: {block:.1f} ns in the block loop, {each:.1f} ns called one by one "
              f"({block / each:.2f}); packed arithmetic instructions in the loop: {packed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
