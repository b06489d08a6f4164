"""The answer to a QP, whichever solver or network produced it.

Field names follow ``qpsolvers.Solution`` where it has them (``x``, ``y`` for
equality duals, ``z`` for inequality duals, ``z_box`` for bound duals, ``obj``),
so users of qpsolvers read a ``solution.json`` without a glossary. Residuals
are always measured on the *original* problem, never a preconditioned one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import numpy as np

from .qp import QP


class Status(str, Enum):
    OPTIMAL = "optimal"                      # all three residuals below the tolerance
    MAX_STEPS = "max_steps"                  # step budget exhausted before the tolerance
    INFEASIBLE = "infeasible_suspected"      # primal residual stalls away from zero
    UNBOUNDED = "unbounded_suspected"        # iterates grow without bound while feasible
    DIVERGED = "diverged"                    # non-finite state
    SOLVED_CLASSICAL = "solved"              # reference solution from a classical solver
    FAILED = "failed"


@dataclass
class Solution:
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    z_box: np.ndarray
    obj: float
    status: Status
    primal_residual: float
    dual_residual: float
    duality_gap: float
    steps: int = 0
    spikes: int = 0
    solver: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def evaluate(cls, qp: QP, x, y=None, z=None, z_box=None, *, status: Status,
                 steps: int = 0, spikes: int = 0, solver: str = "",
                 extras: Optional[dict] = None) -> "Solution":
        """Build a Solution and score it on ``qp`` (qpbenchmark residuals)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.zeros(qp.m_eq) if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
        z = np.zeros(qp.m_ineq) if z is None else np.asarray(z, dtype=np.float64).reshape(-1)
        z_box = np.zeros(qp.n) if z_box is None else np.asarray(z_box, dtype=np.float64).reshape(-1)
        finite = np.all(np.isfinite(x))
        res = qp.residuals(x, y, z, z_box) if finite else dict.fromkeys(
            ("primal_residual", "dual_residual", "duality_gap"), math.inf)
        return cls(x=x, y=y, z=z, z_box=z_box, obj=qp.objective(x) if finite else math.nan,
                   status=Status(status), steps=int(steps), spikes=int(spikes), solver=solver,
                   extras=dict(extras or {}), **res)

    def succeeded(self, tol: float = 1e-3) -> bool:
        """qpbenchmark success: all three residuals strictly below ``tol``."""
        return max(self.primal_residual, self.dual_residual, self.duality_gap) < tol

    def to_dict(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        out = {"x": self.x.tolist(), "y": self.y.tolist(), "z": self.z.tolist(),
               "z_box": self.z_box.tolist(), "obj": clean(float(self.obj)),
               "status": self.status.value, "steps": self.steps, "spikes": self.spikes,
               "primal_residual": clean(float(self.primal_residual)),
               "dual_residual": clean(float(self.dual_residual)),
               "duality_gap": clean(float(self.duality_gap)), "solver": self.solver}
        if self.extras:
            out["extras"] = self.extras
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)
