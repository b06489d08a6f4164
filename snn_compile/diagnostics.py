"""The two pictures a user reads: the spike raster and the convergence plot.

The raster's rows are constraint neurons (labelled with the QP's constraint
names where they exist); marker area grows with the spike payload, so a graded
dual spike that carries a large multiplier stands out. At convergence the rows
that fire persistently are the active set.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt
    return plt


def recorded_rows(net, trace):
    """(population, offset) pairs for the recorded populations, in network order."""
    rows, offset = [], 0
    for pop in net.populations:
        if pop.name in trace.events:
            rows.append((pop, offset))
            offset += pop.size
    return rows, offset


def plot_raster(net, trace, path, *, row_labels=None, title=None, max_points=200_000):
    plt = _pyplot()
    rows, total = recorded_rows(net, trace)
    fig, ax = plt.subplots(figsize=(9, max(2.5, min(9, 0.12 * total + 1.5))))
    for pop, offset in rows:
        steps, neurons, payloads = trace.events[pop.name]
        if steps.size > max_points:       # thin uniformly: the picture, not the data, is the goal
            keep = np.linspace(0, steps.size - 1, max_points).astype(np.int64)
            steps, neurons, payloads = steps[keep], neurons[keep], payloads[keep]
        mag = np.abs(payloads)
        scale = mag.max() if mag.size and mag.max() > 0 else 1.0
        sizes = 2 + 30 * (mag / scale) if pop.spike == "graded" else np.full(steps.size, 4.0)
        ax.scatter(steps, neurons + offset, s=sizes, marker="|" if pop.spike == "binary" else "o",
                   linewidths=0.8, alpha=0.6, label=f"{pop.name} ({pop.spike})")
    if row_labels is not None and total <= 40:
        ax.set_yticks(range(total))
        ax.set_yticklabels(row_labels[:total], fontsize=7)
    ax.set_ylim(-1, max(total, 1))
    ax.set_xlim(0, max(trace.steps, 1))
    ax.set_xlabel("network step")
    ax.set_ylabel("constraint neuron")
    ax.set_title(title or "spike raster (marker size = payload)")
    if rows:
        ax.legend(loc="upper right", fontsize=7)
    if trace.events_truncated if hasattr(trace, "events_truncated") else False:
        ax.text(0.01, 0.01, "event storage capped: later spikes counted, not drawn",
                transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_convergence(history, path, *, optimum=None, tol=None, title=None):
    """history: list of dicts with step, primal_residual, dual_residual, duality_gap, obj."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = np.array([h["step"] for h in history], dtype=float)
    for key, label in (("primal_residual", "primal residual"), ("dual_residual", "dual residual"),
                       ("duality_gap", "duality gap")):
        values = np.array([h[key] for h in history], dtype=float)
        ax.semilogy(steps, np.maximum(values, 1e-16), label=label)
    if optimum is not None and math.isfinite(optimum):
        gap = np.array([abs(h["obj"] - optimum) / max(1.0, abs(optimum)) for h in history])
        ax.semilogy(steps, np.maximum(gap, 1e-16), "--", label="relative objective error")
    if tol is not None:
        ax.axhline(tol, color="grey", lw=0.8, ls=":", label=f"tolerance {tol:g}")
    ax.set_xlabel("network step")
    ax.set_ylabel("residual (original problem)")
    ax.set_title(title or "convergence")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
