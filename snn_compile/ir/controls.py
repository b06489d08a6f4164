"""Global control rules: data that every backend executes the same way.

A control rule is evaluated by the host between chunks of network steps (this
is how a chip runtime would do it too: pause, read, write, resume). Only the
kinds below exist; a backend that cannot execute one refuses the IR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .nodes import Matrix, _fail, as_weight_matrix, per_neuron


@dataclass(eq=False)
class RunningAverage:
    """Uniform average of the listed populations' states since the last restart.

    Updated after every update of each population (docs/ir.md §4).
    """

    populations: tuple

    def __post_init__(self):
        self.populations = tuple(self.populations)
        if not self.populations:
            _fail("control RunningAverage", "populations", "must list at least one population")


@dataclass(eq=False)
class ScaledProblem:
    """The (preconditioned) QP a restart rule measures KKT error on.

    A backend never re-derives the QP; this carries exactly what the rule needs.
    """

    P: Matrix
    q: np.ndarray
    G: Matrix
    h: np.ndarray
    A: Matrix
    b: np.ndarray
    lb: np.ndarray
    ub: np.ndarray

    def __post_init__(self):
        n = np.size(self.q)
        self.q = per_neuron(self.q, n, "ScaledProblem", "q")
        self.P = as_weight_matrix(self.P, (n, n), "ScaledProblem", "P")
        self.G = as_weight_matrix(self.G, (np.shape(self.G)[0], n), "ScaledProblem", "G")
        self.A = as_weight_matrix(self.A, (np.shape(self.A)[0], n), "ScaledProblem", "A")
        self.h = per_neuron(self.h, self.G.shape[0], "ScaledProblem", "h")
        self.b = per_neuron(self.b, self.A.shape[0], "ScaledProblem", "b")
        self.lb = per_neuron(self.lb, n, "ScaledProblem", "lb")
        self.ub = per_neuron(self.ub, n, "ScaledProblem", "ub")


@dataclass(eq=False)
class AdaptiveRestart:
    """Restarted accelerated PDHG control (PDLP/PDQP style); exact rule in docs/ir.md §4.

    Every ``check_every`` steps it measures the KKT error, on ``problem``, of the
    current iterate (``primal``, ``dual``) and of the averaged one
    (``primal_average``, ``dual_average``), and may restart from the better of
    the two, updating the primal weight ω that ``apdhg`` gains read. The dual
    population holds [z; y]: its first ``problem.G.shape[0]`` neurons are the
    inequality duals.
    """

    check_every: int
    problem: ScaledProblem
    primal: str
    primal_average: str
    dual: str
    dual_average: str
    primal_weight_init: float = 1.0
    beta_sufficient: float = 0.2
    beta_necessary: float = 0.8
    beta_artificial: float = 0.36
    primal_weight_smoothing: float = 0.5
    update_primal_weight: bool = True

    def __post_init__(self):
        node = "control AdaptiveRestart"
        if int(self.check_every) < 1:
            _fail(node, "check_every", "must be ≥ 1")
        self.check_every = int(self.check_every)
        for key in ("beta_sufficient", "beta_necessary", "beta_artificial", "primal_weight_smoothing"):
            value = float(getattr(self, key))
            if not 0.0 <= value <= 1.0:
                _fail(node, key, "must lie in [0, 1]")
            setattr(self, key, value)
        self.primal_weight_init = float(self.primal_weight_init)
        if not (np.isfinite(self.primal_weight_init) and self.primal_weight_init > 0):
            _fail(node, "primal_weight_init", "must be a positive number")
        self.update_primal_weight = bool(self.update_primal_weight)

    @property
    def population_names(self) -> tuple:
        return (self.primal, self.primal_average, self.dual, self.dual_average)


CONTROL_TYPES = {cls.__name__: cls for cls in (RunningAverage, AdaptiveRestart)}
