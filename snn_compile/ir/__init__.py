"""The network IR: the one contract between lowering, passes and backends."""
from .controls import AdaptiveRestart, RunningAverage, ScaledProblem
from .fixed_point import FixedPointSpec, PopulationFixed, ProjectionFixed, WeightSlice
from .network import IR_VERSION, Network
from .nodes import Gain, Population, Projection, Readout, ReadoutTerm
from .serialize import load_network, save_network

__all__ = ["Network", "Population", "Projection", "Gain", "Readout", "ReadoutTerm",
           "RunningAverage", "AdaptiveRestart", "ScaledProblem", "IR_VERSION",
           "save_network", "load_network",
           "FixedPointSpec", "PopulationFixed", "ProjectionFixed", "WeightSlice"]
