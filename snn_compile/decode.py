"""From a trace to a QP solution: the readout of docs/ir.md §3, then the
preconditioning map back to the user's variables, then scoring."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .ir import Network
from .qp import QP
from .solution import Solution, Status
from .trace import Trace


def _quantity(trace: Trace, population: str, quantity: str) -> np.ndarray:
    if quantity == "state":
        values = trace.final_state[population]
    elif quantity == "clamp_excess":
        values = trace.clamp_excess[population]
    elif quantity == "average":
        values = trace.averages[population]
    elif quantity == "spike_rate":
        updates = trace.updates.get(population, 0)
        counts = trace.spike_counts[population].astype(np.float64)
        return counts / updates if updates else np.zeros_like(counts)
    else:  # the IR validates quantities; this guards a newer IR read by older code
        raise ValueError(f"unknown readout quantity {quantity!r}")
    return np.asarray(values, dtype=np.float64)


def readout(net: Network, trace: Trace) -> dict[str, np.ndarray]:
    """target -> values in the preconditioned problem's variables.

    Each term adds ``scale · M · Q / g(T−1)``; offsets come last. Targets listed
    in ``net.readout.sizes`` without any term are zeros of that size.
    """
    out = {target: np.zeros(size) for target, size in net.readout.sizes.items()}
    for term in net.readout.terms:
        q = _quantity(trace, term.population, term.quantity)
        value = q if term.matrix is None else np.asarray(term.matrix @ q).reshape(-1)
        value = term.scale * value
        if term.divide_by_gain is not None:
            value = value / trace.gains_final[term.divide_by_gain]
        if term.target in out:
            out[term.target] = out[term.target] + value
        else:
            out[term.target] = value
    for target, offset in net.readout.offsets.items():
        out[target] = out.get(target, np.zeros_like(offset)) + offset
    return out


def _scaling_field(scaling, name: str):
    value = scaling.get(name) if isinstance(scaling, dict) else getattr(scaling, name, None)
    return None if value is None else np.asarray(value, dtype=np.float64)


def unscale(net: Network, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map readout values back through ``provenance["scaling"]`` (identity when absent):
    x = d⊙x̃, y = e_eq⊙ỹ/c, z = e_ineq⊙z̃/c, z_box = z̃_box/(d·c)."""
    scaling = net.provenance.get("scaling")
    if scaling is None:
        return {k: np.array(v, dtype=np.float64) for k, v in values.items()}
    d, e_in, e_eq = (_scaling_field(scaling, k) for k in ("d", "e_ineq", "e_eq"))
    cost = _scaling_field(scaling, "cost")
    c = 1.0 if cost is None else float(cost)
    ones = lambda v, factor: np.ones_like(v) if factor is None else factor  # noqa: E731
    out = {}
    for target, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        if target == "x":
            out[target] = ones(v, d) * v
        elif target == "y":
            out[target] = ones(v, e_eq) * v / c
        elif target == "z":
            out[target] = ones(v, e_in) * v / c
        elif target == "z_box":
            out[target] = v / (ones(v, d) * c)
        else:
            out[target] = v.copy()
    return out


def constraint_spikes(net: Network, trace: Trace) -> int:
    """Total spikes of the ``constraint`` populations (what a Solution reports)."""
    return trace.total_spikes([p.name for p in net.populations if p.role == "constraint"])


def decode_solution(net: Network, trace: Trace, qp: QP, status: Optional[Status] = None, *,
                    solver: Optional[str] = None) -> Solution:
    """The trace's answer to ``qp`` (the ORIGINAL problem), scored on it.

    ``status`` defaults to ``diverged`` for a non-finite x and ``max_steps``
    otherwise; deciding ``optimal`` needs a tolerance, which is the caller's.
    """
    values = unscale(net, readout(net, trace))
    x = values.get("x", np.zeros(qp.n))
    if status is None:
        status = Status.MAX_STEPS if np.all(np.isfinite(x)) else Status.DIVERGED
    return Solution.evaluate(
        qp, x, values.get("y"), values.get("z"), values.get("z_box"), status=status,
        steps=trace.steps, spikes=constraint_spikes(net, trace),
        solver=solver or f"snn-{net.family}/{trace.backend or 'unknown'}",
        extras={"wall_time": trace.wall_time, "backend": trace.backend,
                "events_truncated": trace.events_truncated})
