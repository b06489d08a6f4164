"""The network: named populations, projections between them, gains, the
update schedule, control rules, a readout and provenance."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .controls import AdaptiveRestart, CONTROL_TYPES, RunningAverage
from .fixed_point import FixedPointSpec
from .nodes import Gain, Population, Projection, Readout, _fail

IR_VERSION = 1


@dataclass(eq=False)
class Network:
    """One IR for every family. ``schedule`` is a cycle of steps: at step t the
    populations in ``schedule[t % len(schedule)]`` update, in that order.
    """

    populations: list
    projections: list = field(default_factory=list)
    gains: list = field(default_factory=list)
    schedule: list = field(default_factory=list)
    controls: list = field(default_factory=list)
    readout: Readout = field(default_factory=Readout)
    dt: float = 1.0
    provenance: dict = field(default_factory=dict)
    #: integer formats of a quantized network (docs/ir.md §5); None for a float network
    fixed_point: Optional[FixedPointSpec] = None

    def __post_init__(self):
        self.populations = list(self.populations)
        self.projections = list(self.projections)
        self.gains = list(self.gains)
        self.controls = list(self.controls)
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            _fail("network", "populations", "population names must be unique")
        self._by_name = {p.name: p for p in self.populations}
        gain_names = [g.name for g in self.gains]
        if len(set(gain_names)) != len(gain_names):
            _fail("network", "gains", "gain names must be unique")
        self._gains = {g.name: g for g in self.gains}
        if not self.schedule:
            self.schedule = [[p.name for p in self.populations]]
        self.schedule = [list(step) for step in self.schedule]
        self._validate_schedule()
        for proj in self.projections:
            self._validate_projection(proj)
        for pop in self.populations:
            if pop.bias_gain is not None and pop.bias_gain not in self._gains:
                _fail(f"population '{pop.name}'", "bias_gain", f"unknown gain {pop.bias_gain!r}")
        for ctl in self.controls:
            self._validate_control(ctl)
        self._validate_readout()
        if not float(self.dt) > 0:
            _fail("network", "dt", "must be positive")
        self.dt = float(self.dt)
        if self.fixed_point is not None:
            if not isinstance(self.fixed_point, FixedPointSpec):
                _fail("network", "fixed_point", "must be a FixedPointSpec or None")
            self.fixed_point.check_against(self.populations, self.projections)

    # ------------------------------------------------------------------ validation
    def _validate_schedule(self):
        seen = set()
        for i, step in enumerate(self.schedule):
            if len(set(step)) != len(step):
                _fail("network", f"schedule[{i}]", "a population may update at most once per step")
            for name in step:
                if name not in self._by_name:
                    _fail("network", f"schedule[{i}]", f"unknown population {name!r}")
                seen.add(name)
        missing = set(self._by_name) - seen
        if missing:
            _fail("network", "schedule", f"populations never updated: {sorted(missing)}")

    def _validate_projection(self, proj: Projection):
        node = f"projection '{proj.name}'"
        for end in ("source", "target"):
            if getattr(proj, end) not in self._by_name:
                _fail(node, end, f"unknown population {getattr(proj, end)!r}")
        src, dst = self._by_name[proj.source], self._by_name[proj.target]
        if proj.weights.shape != (dst.size, src.size):
            _fail(node, "weights", f"expected shape ({dst.size}, {src.size}), got {proj.weights.shape}")
        if proj.gain is not None and proj.gain not in self._gains:
            _fail(node, "gain", f"unknown gain {proj.gain!r}")
        if proj.delay == 0:
            # A zero-delay projection reads what the source emitted earlier in the same step.
            for i, step in enumerate(self.schedule):
                if proj.target in step and not (proj.source in step and
                                                step.index(proj.source) < step.index(proj.target)):
                    _fail(node, "delay", f"delay 0 needs '{proj.source}' to update before "
                                         f"'{proj.target}' in every step that updates the target "
                                         f"(schedule[{i}])")

    def _validate_control(self, ctl):
        if type(ctl).__name__ not in CONTROL_TYPES:
            _fail("network", "controls", f"unknown control rule {type(ctl).__name__}")
        if isinstance(ctl, RunningAverage):
            for name in ctl.populations:
                if name not in self._by_name:
                    _fail("control RunningAverage", "populations", f"unknown population {name!r}")
        if isinstance(ctl, AdaptiveRestart):
            for key in ("primal", "primal_average", "dual", "dual_average"):
                name = getattr(ctl, key)
                if name not in self._by_name:
                    _fail("control AdaptiveRestart", key, f"unknown population {name!r}")
            n, m = ctl.problem.P.shape[0], ctl.problem.G.shape[0] + ctl.problem.A.shape[0]
            for key, size in (("primal", n), ("primal_average", n), ("dual", m), ("dual_average", m)):
                if self._by_name[getattr(ctl, key)].size != size:
                    _fail("control AdaptiveRestart", key, f"population must have {size} neurons "
                                                          f"to match the scaled problem")
            if sum(isinstance(c, AdaptiveRestart) for c in self.controls) > 1:
                _fail("network", "controls", "at most one AdaptiveRestart rule")

    def _validate_readout(self):
        for term in self.readout.terms:
            node = f"readout term for '{term.target}'"
            if term.population not in self._by_name:
                _fail(node, "population", f"unknown population {term.population!r}")
            pop = self._by_name[term.population]
            rows = self.readout.sizes.get(term.target)
            expected_cols = pop.size
            if term.matrix is None:
                if rows is not None and rows != pop.size:
                    _fail(node, "matrix", f"identity readout needs {rows} neurons, population has {pop.size}")
            else:
                if term.matrix.shape[1] != expected_cols or (rows is not None and term.matrix.shape[0] != rows):
                    _fail(node, "matrix", f"shape {term.matrix.shape} does not map {pop.size} neurons to {rows}")
            if term.divide_by_gain is not None and term.divide_by_gain not in self._gains:
                _fail(node, "divide_by_gain", f"unknown gain {term.divide_by_gain!r}")
            if term.quantity == "average" and not any(
                    isinstance(c, RunningAverage) and term.population in c.populations for c in self.controls):
                _fail(node, "quantity", f"'average' needs a RunningAverage over '{term.population}'")

    # ------------------------------------------------------------------ queries
    def population(self, name: str) -> Population:
        return self._by_name[name]

    def gain(self, name: str) -> Gain:
        return self._gains[name]

    def incoming(self, name: str) -> list:
        return [p for p in self.projections if p.target == name]

    @property
    def family(self) -> str:
        return self.provenance.get("family", "custom")

    @property
    def neuron_count(self) -> int:
        return sum(p.size for p in self.populations)

    @property
    def synapse_count(self) -> int:
        return sum(p.nnz for p in self.projections)

    def summary(self) -> str:
        pops = ", ".join(f"{p.name}[{p.size}]" for p in self.populations)
        return (f"{self.family} network: {self.neuron_count} neurons ({pops}), "
                f"{self.synapse_count} synapses, {len(self.schedule)} step(s) per cycle")
