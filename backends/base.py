"""The interface every target implements, and the vocabulary of IR features a
target may or may not support.

A backend declares its ``Capabilities``; ``Backend.check`` compares them with
``required_features(net)`` and refuses a network with a ``CapabilityError`` that
names each missing feature and where the network uses it. Backends never
special-case a network family: whatever the IR says is either executed as
docs/ir.md defines it or refused.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from snn_compile.errors import CapabilityError
from snn_compile.ir import AdaptiveRestart, Network, RunningAverage
from snn_compile.runtime import emission_of_state
from snn_compile.trace import Trace

#: Every feature name a network can require, with a human description.
FEATURES: dict[str, str] = {
    "binary_spikes": "binary spikes",
    "graded_spikes": "graded spikes (payload = state)",
    "graded_excess": "graded spikes with payload v − threshold",
    "always_emit": "neurons that emit every update (threshold −∞)",
    "decay": "per-neuron decay other than 1",
    "bias_gain": "biases multiplied by a gain",
    "state_clamp": "state clamps v_min / v_max",
    "reset_subtract": "subtractive reset",
    "reset_to_value": "reset to a value",
    "max_spikes_per_step": "a cap on spikes per update (largest v − θ first)",
    "zero_delay": "delay-0 projections (same-step emission)",
    "delays": "projection delays > 1",
    "multi_phase_schedule": "a schedule of several steps per cycle",
    "partial_schedule": "populations that do not update every step",
    "gain_schedules": "gains that change value at given steps",
    "formula_gains": "formula gains (apdhg step sizes, docs/ir.md §2.1)",
    "control:RunningAverage": "the RunningAverage control rule",
    "control:AdaptiveRestart": "the AdaptiveRestart control rule",
    "readout:average": "readout of running averages",
    "fixed_point": "fixed-point arithmetic",
    "initial_emission": "an emission of the initial state before step 0 (warm starts)",
}


@dataclass(frozen=True)
class Capabilities:
    """What a target can execute. ``features`` ⊆ ``FEATURES``; limits are None when unbounded."""

    features: frozenset
    max_delay: Optional[int] = None
    max_neurons: Optional[int] = None
    dtypes: tuple = ("float64",)
    notes: str = ""

    def __post_init__(self):
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown capability names: {sorted(unknown)}")
        object.__setattr__(self, "features", frozenset(self.features))

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def missing(self, net: Network) -> list[str]:
        """One message per feature (or limit) the network needs and this target lacks."""
        problems = [f"{FEATURES[name]} ({where})" for name, where in required_features(net).items()
                    if name not in self.features]
        if self.max_delay is not None:
            too_long = [p.name for p in net.projections if p.delay > self.max_delay]
            if too_long:
                problems.append(f"delays above {self.max_delay} (projections {', '.join(too_long)})")
        if self.max_neurons is not None and net.neuron_count > self.max_neurons:
            problems.append(f"{net.neuron_count} neurons (at most {self.max_neurons})")
        return problems


def required_features(net: Network) -> dict[str, str]:
    """Feature name → where the network first uses it (for error messages)."""
    need: dict[str, str] = {}

    def use(feature: str, where: str):
        need.setdefault(feature, where)

    for pop in net.populations:
        where = f"population '{pop.name}'"
        use("binary_spikes" if pop.spike == "binary" else "graded_spikes", where)
        if pop.spike == "graded" and pop.payload == "excess":
            use("graded_excess", where)
        if np.any(np.isneginf(pop.threshold)):
            use("always_emit", where)
        if np.any(pop.decay != 1.0):
            use("decay", where)
        if pop.bias_gain is not None:
            use("bias_gain", where)
        if np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max)):
            use("state_clamp", where)
        if pop.reset != "none":
            use(f"reset_{pop.reset}", where)
        if pop.max_spikes_per_step is not None and pop.max_spikes_per_step < pop.size:
            use("max_spikes_per_step", where)
        if pop.emit_initial_state and np.any(emission_of_state(pop, pop.v_init) != 0):
            use("initial_emission", where)
    if getattr(net, "fixed_point", None) is not None:
        use("fixed_point", "the network is quantized (docs/ir.md §5)")
    for proj in net.projections:
        if proj.delay == 0:
            use("zero_delay", f"projection '{proj.name}'")
        elif proj.delay > 1:
            use("delays", f"projection '{proj.name}'")
    if len(net.schedule) > 1:
        use("multi_phase_schedule", f"{len(net.schedule)} steps per cycle")
    always = set.intersection(*(set(step) for step in net.schedule)) if net.schedule else set()
    partial = [p.name for p in net.populations if p.name not in always]
    if partial:
        use("partial_schedule", f"population '{partial[0]}'")
    for gain in net.gains:
        if gain.steps:
            use("gain_schedules", f"gain '{gain.name}'")
        if gain.formula is not None:
            use("formula_gains", f"gain '{gain.name}'")
    for rule in net.controls:
        if isinstance(rule, (RunningAverage, AdaptiveRestart)):
            use(f"control:{type(rule).__name__}", "controls")
    for term in net.readout.terms:
        if term.quantity == "average":
            use("readout:average", f"readout term for '{term.target}'")
    return need


StopCallback = Callable[[int, object], bool]


class Backend(abc.ABC):
    """A target: runs (or emits code for) a network exactly as docs/ir.md defines it."""

    name: str = ""
    description: str = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(installed?, why not). Override when the target needs optional packages."""
        return True, ""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """The IR features this target executes faithfully."""

    def check(self, net: Network) -> None:
        """Raise ``CapabilityError`` naming every feature the network needs and this target lacks."""
        problems = self.capabilities().missing(net)
        if problems:
            raise CapabilityError(f"target '{self.name}' cannot run this network: it lacks "
                                  + "; ".join(problems))

    @abc.abstractmethod
    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, **options) -> Trace:
        """Run ``steps`` network steps from the initial state.

        ``record_every``: state-sample interval (None: at most ~1000 samples;
        0: none). ``stop(step, ctx) -> bool`` is polled periodically with a
        ``snn_compile.runtime.ControlContext``; True ends the run after that step.
        """

    def emit(self, net: Network, out_dir) -> list[Path]:
        """Write the target's artifacts (code, model files) and return their paths."""
        raise NotImplementedError(f"target '{self.name}' has no artifacts to emit; "
                                  f"use 'run' to execute the network")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
