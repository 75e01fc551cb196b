"""The gradient of a subject's FOCEI objective (see :mod:`.focei`) by the population
parameters, from the first-order sensitivities and their derivatives by the random effects.

A subject's contribution ``OFV_i = O_i(eta_i) + ln det Omega + ln det H_i(eta_i)`` depends on
the population parameters directly and through its empirical Bayes estimate ``eta_i``,
which moves with them.  Because ``eta_i`` minimises ``O_i`` (``dO_i/deta = 0`` there), the
move does not change ``O_i`` to first order; it does change ``ln det H_i``.  By the
implicit function theorem ``d eta_i = -M^-1 dF``, with ``F = dO_i/deta`` and ``M`` its
(exact) derivative by eta, so with the adjoint ``lam = M^-1 d(ln det H_i)/d eta``

    d OFV_i = partial d OFV_i  -  lam' dF.

Everything is written in ``u``, the model parameters as the sensitivities see them
(``ln p`` for log-scaled parameters, ``p`` for the others; the random effects add to
``u``: ``du/deta = E``, a selection), per observation ``j``:

* ``J_j = df_j/du`` from the sensitivity equations, ``T_j E = d J_j / d eta`` (the second
  derivatives that ``H_i`` and ``M`` need, only along the random effects) by central
  differences of ``J`` (``STEP`` in eta);
* the residual variance ``R(f, sigma)`` and its derivatives by ``f`` and by ``ln sigma``
  from the error model.

What is returned per subject: ``d OFV_i / du`` (P), ``d OFV_i / d ln sigma`` (error
parameters) and the matrix ``G`` with ``d OFV_i = tr(G dOmega)``; the caller chains them
to its own variables.  And how ``eta_i`` moves with the parameters: the inner problem of
the next evaluation starts from the eta this predicts (:class:`EtaMoves`).  A test
compares the gradient with central differences of the objective itself.
"""

from __future__ import annotations

import numpy as np

#: step in eta of the central differences of d f / d u
STEP = 1e-4


def subject_gradient(subject, eta, f, jac, jac_eta, eta_index, error_models, errors,
                     error_names, omega_inv):
    """``(d OFV_i/du, d OFV_i/d ln sigma, G, moves)`` of one subject at its empirical Bayes
    estimate ``eta`` (m).  ``f``: predictions (n); ``jac``: ``df/du`` (n, P); ``jac_eta``:
    ``d jac / d eta`` (n, P, m); ``eta_index``: the columns of ``u`` with a random effect;
    ``errors``: error parameter values by name, ``error_names`` their order."""
    n = f.size
    r_var = np.empty(n)       # R
    r_f = np.empty(n)         # dR/df
    r_ff = np.empty(n)        # d2R/df2
    r_s = np.zeros((n, len(error_names)))   # dR/d ln sigma
    r_fs = np.zeros((n, len(error_names)))  # d2R/(df d ln sigma)
    for k, model in enumerate(error_models):
        rows = subject.which == k
        s2, d_f, d_log = model.variance(f[rows], errors)
        d_ff, d_f_log = model.curvature(f[rows], errors)
        r_var[rows], r_f[rows], r_ff[rows] = s2, d_f, d_ff
        for name in model.parameters:
            c = error_names.index(name)
            r_s[rows, c] = d_log[name]
            r_fs[rows, c] = d_f_log[name]

    res = subject.values - f
    inv = 1.0 / r_var
    # l_j(f) = ln(2 pi R) + res^2 / R and its derivatives
    l_f = r_f * inv * (1 - res * res * inv) - 2 * res * inv
    l_ff = (r_ff * inv - (r_f * inv) ** 2 + 2 * inv + 4 * res * r_f * inv ** 2
            - res * res * r_ff * inv ** 2 + 2 * res * res * r_f ** 2 * inv ** 3)
    l_s = r_s * (inv * (1 - res * res * inv))[:, None]
    l_fs = (r_fs * inv[:, None] - (r_f * inv ** 2)[:, None] * r_s
            - (res * res * inv ** 2)[:, None] * r_fs
            + (2 * res * res * r_f * inv ** 3)[:, None] * r_s
            + (2 * res * inv ** 2)[:, None] * r_s)
    # the FOCE weight of H = Omega^-1 + sum w g g' and its derivatives
    w = inv + 0.5 * (r_f * inv) ** 2
    w_f = -r_f * inv ** 2 + r_f * r_ff * inv ** 2 - r_f ** 3 * inv ** 3
    w_s = (-inv ** 2)[:, None] * r_s + (r_f * inv ** 2)[:, None] * r_fs \
        - (r_f ** 2 * inv ** 3)[:, None] * r_s

    g = jac[:, eta_index]                          # df/deta (n, m)
    h = omega_inv + (g.T * w) @ g
    h_inv = np.linalg.inv(h)
    v = g @ h_inv                                  # rows: (H^-1 g_j)'
    q = np.einsum("ja,ja->j", g, v)                # g_j' H^-1 g_j
    # partial derivatives of ln det H by u, and by ln sigma
    ldh_u = (w_f * q) @ jac + 2 * np.einsum("j,jka,ja->k", w, jac_eta, v)
    ldh_s = q @ w_s
    # F = dO/deta; its derivatives: by u (K E, here dF/du transposed) and by eta (M)
    k_e = (jac.T * l_ff) @ g + np.einsum("j,jka->ka", l_f, jac_eta)   # (P, m)
    g_ls = g.T @ l_fs                                                  # dF/d ln sigma
    m_mat = k_e[eta_index] + 2 * omega_inv
    m_mat = 0.5 * (m_mat + m_mat.T)
    m_inv = np.linalg.inv(m_mat)
    # the adjoint: d ln det H / d eta, plus F itself.  F is 0 at an exact minimum; an
    # inner problem stopped where O_i is flat to within the runs' noise may leave it
    # slightly off 0, and O_i's change then has the first-order term F d eta that the
    # envelope theorem drops (1 subject in ~1,000 in the fits tried; up to 0.05 in a
    # derivative).  Both move with eta as d eta = -M^-1 dF.
    f_eta = g.T @ l_f + 2 * omega_inv @ eta
    lam = m_inv @ (ldh_u[eta_index] + f_eta)
    d_u = l_f @ jac + ldh_u - k_e @ lam
    d_s = l_s.sum(axis=0) + ldh_s - lam @ g_ls
    # Omega: d OFV = tr(G dOmega); O has eta' Omega^-1 eta, H has Omega^-1, F has
    # 2 Omega^-1 eta
    a = np.outer(eta, eta) + h_inv - np.outer(eta, lam) - np.outer(lam, eta)
    g_omega = omega_inv - omega_inv @ a @ omega_inv
    # how eta_i moves with u, ln sigma and Omega: the next evaluation's inner problem
    # starts from the eta this predicts
    moves = (m_inv @ k_e.T, m_inv @ g_ls, 2 * m_inv @ omega_inv, omega_inv @ eta, m_mat)
    return d_u, d_s, g_omega, moves


class EtaMoves:
    """First-order prediction of the empirical Bayes estimates at new population values
    from those at an evaluated point: ``d eta_i = -M^-1 (dF/du du + dF/d ln sigma
    d ln sigma + dF/dOmega dOmega)``, with dF/dOmega dOmega = -2 Omega^-1 dOmega
    Omega^-1 eta.  For the small steps near an optimum the start is within O(step^2) of
    the answer and saves inner steps; a long step can predict far off (the Omega term
    scales eta with omega), so a subject whose predicted eta moves by more than
    ``LIMIT`` starts from its previous eta instead."""

    LIMIT = 1.0

    def __init__(self, u, log_errors, omega, etas, moves):
        self.u, self.log_errors, self.omega, self.etas = u, log_errors, omega, etas
        self.a_u = np.array([x[0] for x in moves])        # (S, m, P)
        self.a_s = np.array([x[1] for x in moves])        # (S, m, E)
        self.a_omega = np.array([x[2] for x in moves])    # (S, m, m)
        self.w = np.array([x[3] for x in moves])          # (S, m): Omega^-1 eta
        self.hessian = np.array([x[4] for x in moves])    # (S, m, m): M, d2 O_i / d eta2

    def predict(self, u, log_errors, omega):
        """(starting etas, per subject the Hessian of O_i to start from or None) at new
        population values."""
        du = u - self.u
        ds = log_errors - self.log_errors
        d_omega_w = np.einsum("ab,sb->sa", omega - self.omega, self.w)
        move = (- np.einsum("sap,sp->sa", self.a_u, du)
                - np.einsum("sae,e->sa", self.a_s, ds)
                + np.einsum("sab,sb->sa", self.a_omega, d_omega_w))
        near = np.all(np.abs(move) <= self.LIMIT, axis=1)  # False for nan too
        start = np.where(near[:, None], self.etas + move, self.etas)
        return start, [h if ok else None for h, ok in zip(self.hessian, near)]
