"""Error types that the CLI turns into one-line messages and exit codes.

``InputError`` is for anything the *user* supplied that we refuse (a file, a
field, a value); the CLI prints ``str(err)`` on one line and exits with 2.
Anything else escaping the CLI is an internal error (exit 1).
"""
from __future__ import annotations


class SnnCompileError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(SnnCompileError, ValueError):
    """Bad user input: names the source (file), the field and the reason.

    ``line`` is the 1-based line in ``source`` when the reader knows it.
    """

    def __init__(self, reason: str, *, source: str | None = None,
                 field: str | None = None, line: int | None = None):
        self.reason = reason
        self.source = source
        self.field = field
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source) + (f":{self.line}" if self.line else ""))
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ": ".join(where)
        text = f"{prefix}: {self.reason}" if prefix else self.reason
        return " ".join(text.split())  # always a single line

    def located(self, source: str | None = None, field: str | None = None,
                line: int | None = None) -> "InputError":
        """A copy with missing location details filled in (existing ones win)."""
        return InputError(self.reason, source=self.source or source,
                          field=self.field or field, line=self.line or line)


class CapabilityError(SnnCompileError):
    """A backend or chip cannot express something the IR asks for."""


class BackendUnavailable(SnnCompileError):
    """A target's simulator package is not installed."""
