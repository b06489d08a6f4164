"""snn-compile: compile convex QPs to spiking neural networks.

    import snn_compile as sc
    solution = sc.solve("problem.yaml")            # primal-dual network, reference simulator
    net = sc.compile(qp, target="reference", family="lif")
    solution = net.solve(steps=50_000)
"""
from . import lower
from .api import CompiledNetwork, compile, solve
from .checker import check
from .errors import CapabilityError, InputError, SnnCompileError
from .frontends import read_problem
from .qp import QP
from .solution import Solution, Status

__version__ = "0.1.0"
__all__ = ["QP", "Solution", "Status", "read_problem", "compile", "solve", "check", "CompiledNetwork",
           "InputError", "CapabilityError", "SnnCompileError", "__version__"]
