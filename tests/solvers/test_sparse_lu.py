"""The straight-line LU of a sparsity pattern (mechsim/solvers/sparse_lu.py), against
numpy's dense solve on generated patterns and values, and its threshold test."""

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import mechsim
from mechsim.solvers.sparse_lu import THRESHOLD, sparse_lu


@st.composite
def patterns(draw):
    n = draw(st.integers(1, 9))
    cells = [(i, j) for i in range(n) for j in range(n)]
    nonzeros = draw(st.lists(st.sampled_from(cells), unique=True, max_size=len(cells)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return n, nonzeros, seed


@settings(max_examples=200, deadline=None)
@given(patterns(), st.floats(1e-4, 1e3))
def test_a_factorisation_that_passes_solves_the_system(case, c):
    """Whenever the pivots pass the threshold test, the factors multiply back to I - c J
    and the solve meets the backward-error bound of LU (Higham, Accuracy and Stability of
    Numerical Algorithms, thm. 9.4: |b - M x| <= gamma_3n |L| |U| |x|)."""
    n, nonzeros, seed = case
    rng = np.random.default_rng(seed)
    jm = np.zeros((n, n))
    for i, j in nonzeros:
        jm[i, j] = rng.normal()
    lu = sparse_lu(n, nonzeros)
    vals = np.full(lu.size, np.nan)
    b = rng.normal(size=n)
    if not lu.factor(jm, c, vals):
        return  # the dense pivoted LU is used then (tested through the engine)
    lower, upper = np.eye(n), np.zeros((n, n))
    for (i, j), v in zip(lu.entries, vals):
        (lower if i > j else upper)[i, j] = v
    np.testing.assert_allclose(np.diag(upper) * vals[len(lu.entries):], 1.0, rtol=1e-15)
    m = np.eye(n) - c * jm
    product = np.abs(lower) @ np.abs(upper)
    eps = np.finfo(float).eps
    assert np.all(np.abs(lower @ upper - m) <= 2 * n * eps * product + 1e-300)
    x = b.copy()
    lu.solve(vals, x, 0)
    assert np.all(np.abs(b - m @ x) <= 6 * n * eps * (product @ np.abs(x)) + 1e-300)


def test_a_small_pivot_is_refused():
    """A 2 x 2 matrix whose first pivot is below THRESHOLD times the entry under it: the
    factorisation reports failure instead of dividing by it."""
    lu = sparse_lu(2, [(0, 0), (1, 0), (0, 1)])
    vals = np.zeros(lu.size)
    # I - c J with c = 1: [[1 - J00, -J01], [-J10, 1]]; pivot 1 - J00 = 0.01, below it 1
    jm = np.array([[0.99, 1.0], [-1.0, 0.0]])
    assert THRESHOLD * 1.0 > 0.01
    assert not lu.factor(jm, 1.0, vals)
    jm[0, 0] = 0.0  # pivot 1 against 1 below: accepted
    assert lu.factor(jm, 1.0, vals)


def test_the_solve_works_on_one_block_of_a_longer_vector():
    """The offset argument: block b of a block-diagonal system (sensitivity equations)."""
    lu = sparse_lu(2, [(0, 1), (1, 0)])
    vals = np.zeros(lu.size)
    jm = np.array([[0.0, 0.5], [0.25, 0.0]])
    assert lu.factor(jm, 1.0, vals)
    b = np.array([9.0, 9.0, 1.0, 2.0, 9.0])
    lu.solve(vals, b, 2)
    np.testing.assert_allclose(b[2:4], np.linalg.solve(np.eye(2) - jm, [1.0, 2.0]))
    np.testing.assert_array_equal(b[[0, 1, 4]], 9.0)


def test_the_shipped_models_patterns_fill_in_as_counted():
    """Elimination on the pattern of the benchmark's model: the entries it keeps are the
    pattern with the diagonal plus the fill-in, counted here independently by dense
    symbolic elimination of a boolean matrix."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "models" / \
        "cd38_myeloma_gen1.toml"
    cm = mechsim.compile_model(mechsim.load_model(path))
    n = len(cm.state_names)
    nonzeros = [(i, j) for i, j, _ in cm.jac_entries]
    filled = np.eye(n, dtype=bool)
    for i, j in nonzeros:
        filled[i, j] = True
    for k in range(n):
        filled[k + 1:, k + 1:] |= np.outer(filled[k + 1:, k], filled[k, k + 1:])
    lu = sparse_lu(n, nonzeros)
    assert set(lu.entries) == set(zip(*np.nonzero(filled)))
    assert len(lu.entries) < n * n
