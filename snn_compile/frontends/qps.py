"""QPS / MPS text files, free or fixed format.

Sections: NAME, ROWS, COLUMNS, RHS, RANGES, BOUNDS, QUADOBJ / QSECTION / QMATRIX,
OBJSENSE and ENDATA. The objective is ``c₀ + cᵀx + ½xᵀQx``:

* the first N row is the objective; other N rows are ignored;
* an RHS entry on the objective row stores −c₀;
* QUADOBJ and QSECTION list one triangle of Q (mirrored here), QMATRIX all of it;
* RANGES follow the MPS rules: on an E row the sign of R picks the side;
* bounds default to 0 ≤ x < ∞; ``UP`` with a negative value on a variable
  without an explicit lower bound also sets the lower bound to −∞ (the rule
  CPLEX and HiGHS apply); BV, LI and UI are read as their continuous
  relaxation, and integer MARKER lines are skipped, since a QP has no integers;
* of several RHS / RANGES / BOUNDS vectors only the first is used, and in them
  a magnitude of 1e20 or more means infinity;
* OBJSENSE MAX is turned into minimising the negated objective.

Rows become QP constraints through ``split_rows``, the same split the ``.mat``
reader uses: equalities (E rows, and ranged rows with a zero range) in file
order, then the ``≤`` sides, then the ``≥`` sides (negated).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..qp import QP
from ._common import build_qp, existing_file, split_rows

#: 0-based slices of the six fixed-format fields (columns 2-3, 5-12, 15-22,
#: 25-36, 40-47 and 50-61).
_FIXED_FIELDS = (slice(1, 3), slice(4, 12), slice(14, 22), slice(24, 36), slice(39, 47), slice(49, 61))
_QUADRATIC = {"QUADOBJ": "triangle", "QSECTION": "triangle", "QMATRIX": "full"}
_SECTIONS = {"NAME", "ROWS", "COLUMNS", "RHS", "RANGES", "BOUNDS", "OBJSENSE", "ENDATA", *_QUADRATIC}
_BOUND_TYPES = {"UP", "LO", "FX", "FR", "MI", "PL", "BV", "LI", "UI"}
_VALUELESS_BOUNDS = {"FR", "MI", "PL", "BV"}
#: Magnitude from which a bound or right-hand side is infinite (as in CPLEX and HiGHS).
MPS_INFINITY = 1e20


def read_qps(path, *, name: str | None = None, fixed: bool | None = None) -> QP:
    """Read a QPS/MPS file; ``fixed=None`` tries free format, then fixed format."""
    path = existing_file(path)
    source = str(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc})", source=source) from None
    lines = text.splitlines()
    if fixed is not None:
        model = _Parser(lines, source, fixed).parse()
    else:
        try:
            model = _Parser(lines, source, fixed=False).parse()
        except InputError as free_error:
            try:
                model = _Parser(lines, source, fixed=True).parse()
            except InputError as fixed_error:  # report whichever reading got further
                raise (fixed_error if (fixed_error.line or 0) > (free_error.line or 0)
                       else free_error) from None
    return model.to_qp(source, name or path.stem)


@dataclass
class _Model:
    rows: dict = field(default_factory=dict)        # name -> index among constraint rows
    row_types: list = field(default_factory=list)   # 'E' | 'L' | 'G'
    objective: str | None = None
    ignored_rows: set = field(default_factory=set)  # extra N rows
    cols: dict = field(default_factory=dict)        # name -> index
    entries: dict = field(default_factory=dict)     # (row, col) -> value
    q: dict = field(default_factory=dict)
    rhs: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    constant: float = 0.0
    lower: dict = field(default_factory=dict)
    upper: dict = field(default_factory=dict)
    negative_up: set = field(default_factory=set)
    quad: dict = field(default_factory=dict)        # (i, j) -> value, as listed
    quad_mode: str | None = None
    maximize: bool = False

    def to_qp(self, source: str, name: str) -> QP:
        n, m = len(self.cols), len(self.row_types)
        if n == 0:
            raise InputError("no variables (the COLUMNS section is empty)", source=source, field="COLUMNS")
        q = np.zeros(n)
        for j, v in self.q.items():
            q[j] = v
        C = _coo(self.entries, (m, n))
        rhs = np.array([self.rhs.get(i, 0.0) for i in range(m)])
        kinds = np.array(self.row_types, dtype="U1")
        lower = np.where(kinds == "L", -np.inf, rhs)
        upper = np.where(kinds == "G", np.inf, rhs)
        for i, R in self.ranges.items():
            kind = kinds[i]
            if kind == "L" or (kind == "E" and R < 0):
                lower[i] = rhs[i] - abs(R)
            if kind == "G" or (kind == "E" and R > 0):
                upper[i] = rhs[i] + abs(R)
        lb, ub = np.zeros(n), np.full(n, np.inf)
        for j, v in self.lower.items():
            lb[j] = v
        for j, v in self.upper.items():
            ub[j] = v
        for j in self.negative_up - set(self.lower):
            lb[j] = -np.inf
        P = _coo(self.quad, (n, n))
        if self.quad_mode == "triangle":
            P = P + P.T - sp.diags(P.diagonal())
        sign = -1.0 if self.maximize else 1.0
        row_names = list(self.rows)
        return build_qp(source, P=sign * P.tocsr(), q=sign * q, r=sign * self.constant,
                        lb=lb, ub=ub, name=name, var_names=list(self.cols),
                        **split_rows(C, lower, upper, row_names))


def _coo(entries: dict, shape) -> sp.csr_matrix:
    if not entries:
        return sp.csr_matrix(shape)
    (rows, cols), vals = zip(*entries.keys()), list(entries.values())
    return sp.csr_matrix((vals, (rows, cols)), shape=shape)


def _infinite_if_huge(value: float) -> float:
    return float(np.copysign(np.inf, value)) if abs(value) >= MPS_INFINITY else value


class _Parser:
    def __init__(self, lines, source: str, fixed: bool):
        self.lines, self.source, self.fixed = lines, source, fixed
        self.model = _Model()
        self.section = None
        self.lineno = 0
        self.first_set = {}  # section -> name of the first RHS/RANGES/BOUNDS vector

    def fail(self, reason: str) -> InputError:
        fmt = "fixed" if self.fixed else "free"
        return InputError(f"{reason} ({fmt}-format MPS)", source=self.source,
                          field=self.section, line=self.lineno or None)

    def parse(self) -> _Model:
        for self.lineno, line in enumerate(self.lines, start=1):
            if not line.strip() or line.startswith("*"):
                continue
            if not line[0].isspace():
                if self._header(line):
                    return self.model
            elif self.section is None:
                raise self.fail("data line before the first section header")
            else:
                getattr(self, "_" + self.section.lower())(self._fields(line))
        self.lineno = len(self.lines)
        raise self.fail("the file ends without ENDATA (truncated?)")

    def _header(self, line: str) -> bool:
        words = line.split()
        keyword = self.section = words[0].upper()
        if keyword not in _SECTIONS:
            if keyword in ("QCMATRIX", "INDICATORS", "SOS", "CSECTION"):
                raise self.fail(f"section {keyword} is not supported: the problem is not a convex QP")
            raise self.fail(f"unknown section '{words[0]}'")
        if keyword in _QUADRATIC:
            mode = _QUADRATIC[keyword]
            if self.model.quad_mode not in (None, mode):
                raise self.fail("both QMATRIX and QUADOBJ/QSECTION are present")
            self.model.quad_mode = mode
            if keyword == "QSECTION" and len(words) > 1 and words[1] != self.model.objective:
                raise self.fail(f"QSECTION of row '{words[1]}' is a quadratic constraint, not supported")
        elif keyword == "OBJSENSE" and len(words) > 1:
            self._objsense(words[1:])
        return keyword == "ENDATA"

    def _fields(self, line: str) -> list[str]:
        if not self.fixed:
            return line.split()
        padded = line.ljust(61)
        return [padded[s].strip() for s in _FIXED_FIELDS]

    def _number(self, text: str) -> float:
        try:
            value = float(text.replace("D", "E").replace("d", "e"))  # Fortran writes 1.0D+01
        except ValueError:
            value = np.nan
        if np.isnan(value):
            raise self.fail(f"'{text}' is not a number")
        return value

    def _col(self, name: str) -> int:
        try:
            return self.model.cols[name]
        except KeyError:
            raise self.fail(f"variable '{name}' is not declared in COLUMNS") from None

    # ------------------------------------------------------------- sections
    def _name(self, fields):
        pass  # a continuation of the NAME record: nothing to keep

    def _objsense(self, fields):
        sense = next((f for f in fields if f), "").upper()
        if sense not in ("MIN", "MAX", "MINIMIZE", "MAXIMIZE"):
            raise self.fail(f"OBJSENSE must be MIN or MAX, got '{sense}'")
        self.model.maximize = sense.startswith("MAX")

    def _rows(self, fields):
        kind, name = (fields[0], fields[1]) if self.fixed else (fields + ["", ""])[:2]
        if (not self.fixed and len(fields) != 2) or not name:
            raise self.fail("expected a row type and a row name")
        kind, model = kind.upper(), self.model
        if name in model.rows or name == model.objective or name in model.ignored_rows:
            raise self.fail(f"row '{name}' is declared twice")
        if kind == "N":
            if model.objective is None:
                model.objective = name
            else:
                model.ignored_rows.add(name)
        elif kind in ("E", "L", "G"):
            model.rows[name] = len(model.row_types)
            model.row_types.append(kind)
        else:
            raise self.fail(f"unknown row type '{kind}' (expected N, E, L or G)")

    def _columns(self, fields):
        if any("'MARKER'" in f for f in fields):
            return  # integrality markers: the QP is the continuous relaxation
        col, pairs = self._named_pairs(fields, set_name_optional=False)
        model = self.model
        j = model.cols.setdefault(col, len(model.cols))
        for row, value in pairs:
            if row == model.objective:
                self._store(model.q, j, value, f"objective coefficient of '{col}'")
            elif row in model.rows:
                self._store(model.entries, (model.rows[row], j), value, f"entry ({row}, {col})")
            elif row not in model.ignored_rows:
                raise self.fail(f"row '{row}' is not declared in ROWS")

    def _rhs(self, fields):
        for row, value in self._vector_entries(fields):
            if row == self.model.objective:
                self.model.constant = -value
            else:
                self._store(self.model.rhs, self.model.rows[row], value, f"RHS of row '{row}'")

    def _ranges(self, fields):
        for row, value in self._vector_entries(fields):
            if row != self.model.objective:
                self._store(self.model.ranges, self.model.rows[row], value, f"range of row '{row}'")

    def _bounds(self, fields):
        if self.fixed:
            kind, set_name, col, value = fields[0].upper(), fields[1], fields[2], fields[3]
        else:
            kind = fields[0].upper()
            set_name, col, value = self._free_bound_fields(kind, fields[1:])
        if kind == "SC":
            raise self.fail("semi-continuous (SC) bounds are not supported: the problem is not a convex QP")
        if kind not in _BOUND_TYPES:
            raise self.fail(f"unknown bound type '{kind}'")
        if not self._first_vector(set_name):
            return
        j, model = self._col(col), self.model
        if kind in _VALUELESS_BOUNDS:
            lower, upper = {"FR": (-np.inf, np.inf), "MI": (-np.inf, None),
                            "PL": (None, np.inf), "BV": (0.0, 1.0)}[kind]
        elif not value:
            raise self.fail(f"bound {kind} on '{col}' has no value")
        else:
            v = _infinite_if_huge(self._number(value))
            lower, upper = {"UP": (None, v), "UI": (None, v), "LO": (v, None), "LI": (v, None),
                            "FX": (v, v)}[kind]
            if kind in ("UP", "UI") and v < 0:
                model.negative_up.add(j)
        if lower is not None:
            model.lower[j] = lower
        if upper is not None:
            model.upper[j] = upper

    def _free_bound_fields(self, kind: str, rest: list[str]) -> tuple[str, str, str]:
        """(vector name, column, value) of a free-format BOUNDS line.

        The vector name is optional, so ``FR BND x`` and ``FR x 0`` both have
        two fields after the type: a declared column in second place decides.
        """
        if kind in _VALUELESS_BOUNDS:
            if len(rest) == 1:
                return "", rest[0], ""
            if len(rest) == 2:
                return (rest[0], rest[1], "") if rest[1] in self.model.cols else ("", rest[0], rest[1])
        elif len(rest) == 2:
            return "", rest[0], rest[1]
        if len(rest) == 3:
            return rest[0], rest[1], rest[2]
        wanted = "column" if kind in _VALUELESS_BOUNDS else "column value"
        raise self.fail(f"malformed {kind} bound: expected [vector name] {wanted}")

    def _quadratic(self, fields):
        if self.fixed:
            a, b, value = fields[1], fields[2], fields[3]
        elif len(fields) == 3:
            a, b, value = fields
        else:
            raise self.fail("expected two variable names and a value")
        i, j, v = self._col(a), self._col(b), self._number(value)
        quad = self.model.quad
        key = (i, j)
        if self.model.quad_mode == "triangle" and (j, i) in quad and i != j:
            raise self.fail(f"({a}, {b}) is listed in both triangles; {self.section} lists one triangle")
        self._store(quad, key, v, f"quadratic entry ({a}, {b})")

    _quadobj = _qsection = _qmatrix = _quadratic

    # ------------------------------------------------------------- helpers
    def _named_pairs(self, fields, *, set_name_optional: bool):
        """(leading name, [(row, value), ...]) of a COLUMNS/RHS/RANGES line."""
        if self.fixed:
            name, pairs = fields[1], [(fields[2], fields[3])]
            if fields[4]:
                pairs.append((fields[4], fields[5]))
        else:
            if set_name_optional and len(fields) % 2 == 0:
                fields = [""] + fields
            if len(fields) not in (3, 5):
                raise self.fail("expected a name followed by one or two (row, value) pairs")
            name, pairs = fields[0], [(fields[1], fields[2])]
            if len(fields) == 5:
                pairs.append((fields[3], fields[4]))
        if any(not row for row, _ in pairs) or not (name or set_name_optional):
            raise self.fail("missing row or column name")
        return name, [(row, self._number(value)) for row, value in pairs]

    def _vector_entries(self, fields):
        set_name, pairs = self._named_pairs(fields, set_name_optional=True)
        if not self._first_vector(set_name):
            return []
        model = self.model
        for row, _ in pairs:
            if row not in model.rows and row not in model.ignored_rows and row != model.objective:
                raise self.fail(f"row '{row}' is not declared in ROWS")
        return [(row, _infinite_if_huge(v)) for row, v in pairs if row not in model.ignored_rows]

    def _first_vector(self, set_name: str) -> bool:
        return self.first_set.setdefault(self.section, set_name) == set_name

    def _store(self, target: dict, key, value: float, what: str):
        if key in target:
            raise self.fail(f"{what} is given twice")
        target[key] = value
