"""snn-compile: compile convex QPs to spiking neural networks."""
from .errors import InputError, SnnCompileError
from .qp import QP
from .solution import Solution, Status

__version__ = "0.1.0"
__all__ = ["QP", "Solution", "Status", "InputError", "SnnCompileError", "__version__"]
