"""Regenerate the figures of docs/raster.md:  .venv/bin/python docs/figures/make_figures.py"""
from pathlib import Path

import numpy as np

import snn_compile as sc
from snn_compile.diagnostics import plot_raster

HERE = Path(__file__).resolve().parent


def small_qp(seed=0, n=20, m=12):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    P = M.T @ M / n + 0.1 * np.eye(n)
    G = rng.standard_normal((m, n))
    x_free = rng.standard_normal(n)
    return sc.QP(P=P, q=-P @ x_free, G=G, h=G @ x_free - rng.uniform(-3.0, 1.0, m), name="random20")


def raster(qp, name, title, steps, tol=0.0, **options):
    compiled = sc.compile(qp, **options)
    compiled.solve(steps, tol=tol)
    labels = [f"g{i}" for i in range(qp.m_ineq)] + [f"a{i}" for i in range(qp.m_eq)]
    plot_raster(compiled.net, compiled.last_trace, HERE / name, row_labels=labels, title=title)


def main():
    qp = small_qp()
    raster(qp, "raster_primal_dual.png", "primal-dual: bursts, then the active set fires persistently", 600)
    raster(qp, "raster_projection.png", "projection family, one projection per step: active rows take turns "
           "for ever (limit cycle)", 150, family="projection", sequential=True)
    raster(qp, "raster_lif.png", "pure LIF: binary spikes; rates encode the duals", 4000, family="lif",
           gamma=0.05)
    infeasible = sc.QP(P=np.eye(2), q=[0.0, 0.0], G=[[1.0, 1.0], [-1.0, -1.0]], h=[-1.0, -1.0],
                       name="infeasible")
    raster(infeasible, "raster_infeasible.png", "infeasible problem: two rows fire forever, payloads grow",
           600)


if __name__ == "__main__":
    main()
