"""Markowitz mean–variance portfolios as QPs.

    minimise    ½ γ wᵀΣw − μᵀw                (γ: risk aversion)
    subject to  1ᵀw = budget                  (one equality neuron)
                Σ_{i∈g} wᵢ ≤ cap_g            (optional group caps, inequality neurons)
                0 ≤ w ≤ cap                   (long-only and per-asset caps: the clamp)

Sweeping γ traces the efficient frontier (``efficient_frontier``).
``synthetic_market`` generates returns from a seeded factor model for the
examples and tests; no market data ship with the project's dependencies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix, positive


@dataclass
class Portfolio:
    weights: np.ndarray
    expected_return: float
    volatility: float             # √(wᵀΣw)
    names: tuple

    def as_dict(self, threshold: float = 1e-6) -> dict:
        """Holdings above ``threshold``, by asset name."""
        return {name: float(w) for name, w in zip(self.names, self.weights) if w > threshold}


def synthetic_market(n_assets: int = 20, n_periods: int = 500, *, n_factors: int = 3,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily returns (periods × assets) from a seeded factor model, and their sample
    mean and covariance (μ, Σ) as the estimates a user would plug in."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(0.0, 1.0, (n_assets, n_factors))
    factor_vol = np.linspace(0.012, 0.004, n_factors)
    idio_vol = rng.uniform(0.005, 0.02, n_assets)
    drift = rng.uniform(-0.0002, 0.0012, n_assets)
    returns = (drift + rng.normal(size=(n_periods, n_factors)) * factor_vol @ loadings.T
               + rng.normal(size=(n_periods, n_assets)) * idio_vol)
    return returns, returns.mean(axis=0), np.cov(returns, rowvar=False)


def markowitz(mu, sigma, *, risk_aversion: float = 1.0, budget: float = 1.0, long_only: bool = True,
              cap: Optional[float] = None, groups: Optional[dict] = None,
              names: Optional[Sequence[str]] = None) -> AppQP:
    """The mean–variance QP; decode gives a ``Portfolio``.

    ``cap`` bounds every weight from above (and, without ``long_only``, from
    below by −cap); ``groups`` maps a group name to (asset indices, cap).
    """
    mu = as_matrix(mu, "mu", ndim=1)
    sigma = as_matrix(sigma, "sigma")
    n = mu.size
    if sigma.shape != (n, n):
        raise InputError(f"must be {n}×{n} to match mu", field="sigma")
    gamma = positive(risk_aversion, "risk_aversion")
    budget = float(budget)
    lb = np.zeros(n) if long_only else np.full(n, -np.inf)
    ub = np.full(n, np.inf)
    if cap is not None:
        cap = positive(cap, "cap")
        if long_only and cap * n < budget:
            raise InputError(f"caps of {cap:g} on {n} assets cannot hold the budget {budget:g}", field="cap")
        ub[:] = cap
        if not long_only:
            lb[:] = -cap
    names = tuple(names) if names is not None else tuple(f"asset{i}" for i in range(n))
    G, h, ineq_names = None, None, None
    if groups:
        G = np.zeros((len(groups), n))
        h = np.zeros(len(groups))
        for row, (members, limit) in enumerate(groups.values()):
            G[row, list(members)] = 1.0
            h[row] = float(limit)
        ineq_names = list(groups)
    sym = 0.5 * (sigma + sigma.T)
    qp = QP(P=gamma * sym, q=-mu, G=G, h=h, A=np.ones((1, n)), b=[budget], lb=lb, ub=ub,
            name="markowitz", var_names=names, eq_names=["budget"], ineq_names=ineq_names)

    def decode(solution: Solution) -> Portfolio:
        w = solution.x.copy()
        return Portfolio(w, float(mu @ w), float(np.sqrt(max(w @ sym @ w, 0.0))), names)

    return AppQP(qp, decode)


def efficient_frontier(mu, sigma, risk_aversions: Sequence[float], solve, **kwargs) -> list[Portfolio]:
    """One portfolio per risk aversion; ``solve`` maps a QP to a Solution."""
    portfolios = []
    for gamma in risk_aversions:
        qp, decode = markowitz(mu, sigma, risk_aversion=gamma, **kwargs)
        portfolios.append(decode(solve(qp)))
    return portfolios
