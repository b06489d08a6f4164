"""Pieces every reader shares: size limits, checked array loading, row splitting.

Sizes claimed by a file (a shape in a YAML mapping, an ``.npy`` header, a
Matrix Market banner) are checked *before* anything of that size is allocated,
so a ten-byte file claiming a 2e9×2e9 matrix costs nothing.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..conversions import split_two_sided_rows
from ..errors import InputError
from ..qp import QP

#: Largest number of variables or constraint rows a file may declare.
MAX_DIM = 10_000_000
#: Largest number of stored entries (dense m·n, or sparse nnz) of one array.
MAX_ENTRIES = 50_000_000

#: Fields that build_qp passes to QP as-is.
_QP_FIELDS = ("P", "q", "G", "h", "A", "b", "lb", "ub", "r", "name",
              "var_names", "ineq_names", "eq_names")


def existing_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        reason = "is a directory, not a problem file" if path.is_dir() else "file not found"
        raise InputError(reason, source=str(path))
    return path


def build_qp(source: str, line_of=None, **fields) -> QP:
    """``QP(**fields)``, with validation errors located in ``source``.

    ``line_of`` maps a field name to its line in the file, where known.
    """
    try:
        return QP(**{k: v for k, v in fields.items() if k in _QP_FIELDS})
    except InputError as err:
        line = line_of(err.field) if (line_of and err.field) else None
        raise err.located(source=source, line=line) from None


def check_shape(shape, *, source: str, field: str, dense: bool, expected=None, line=None) -> tuple:
    """Refuse a claimed shape that is malformed, too large or not ``expected``."""
    fail = lambda reason: InputError(reason, source=source, field=field, line=line)  # noqa: E731
    if not isinstance(shape, (tuple, list)) or not shape or len(shape) > 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise fail(f"shape must be one or two non-negative integers, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if max(shape) > MAX_DIM:
        raise fail(f"claims shape {_fmt(shape)}; at most {MAX_DIM} rows or columns are accepted")
    if dense and int(np.prod(shape)) > MAX_ENTRIES:
        raise fail(f"claims a dense {_fmt(shape)} array; at most {MAX_ENTRIES} entries are accepted")
    if expected is not None and shape != tuple(expected):
        raise fail(f"expected shape {_fmt(expected)}, got {_fmt(shape)}")
    return shape


def _fmt(shape) -> str:
    return "×".join(str(d) for d in shape)


def _check_dtype(dtype: np.dtype, *, source: str, field: str):
    if dtype.kind not in "biuf":
        raise InputError(f"holds {dtype} data; only real numbers are accepted", source=source, field=field)


def _npy_header(fp):
    """(shape, dtype) of an .npy stream, reading only its header."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def load_npy(path: Path, *, source: str, field: str, expected=None) -> np.ndarray:
    try:
        with open(path, "rb") as fp:
            shape, dtype = _npy_header(fp)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable .npy file ({exc})", source=source, field=field) from None
    check_shape(shape, source=source, field=field, dense=True, expected=expected)
    _check_dtype(dtype, source=source, field=field)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path.name} ({exc})", source=source, field=field) from None


class NpzArchive:
    """Size-checked, pickle-free access to the arrays of an ``.npz`` file."""

    def __init__(self, path: Path, *, source: str, field: str | None = None):
        self.source, self.path = source, path
        try:
            self._npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"not a readable .npz archive ({exc})", source=source, field=field) from None
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            raise InputError(f"{path.name} holds a single array, not an .npz archive",
                             source=source, field=field)
        self.keys = set(self._npz.files)

    def close(self):
        self._npz.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def header(self, key: str, field: str):
        member = key if key in self._npz.zip.namelist() else key + ".npy"
        try:
            with self._npz.zip.open(member) as fp:
                return _npy_header(fp)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InputError(f"array '{key}' is unreadable ({exc})", source=self.source,
                             field=field) from None

    def array(self, key: str, field: str, *, expected=None, kinds: str = "biuf") -> np.ndarray:
        if key not in self.keys:
            raise InputError(f"no array '{key}' in {self.path.name}", source=self.source, field=field)
        shape, dtype = self.header(key, field)
        check_shape(shape or (1,), source=self.source, field=field, dense=True, expected=expected)
        if dtype.kind not in kinds:
            raise InputError(f"array '{key}' holds {dtype} data; only real numbers are accepted",
                             source=self.source, field=field)
        try:
            return self._npz[key]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"array '{key}' is unreadable ({exc})", source=self.source,
                             field=field) from None

    def is_scipy_sparse(self, prefix: str = "") -> bool:
        return {prefix + "data", prefix + "shape"} <= self.keys

    def sparse(self, prefix: str, field: str, *, expected=None) -> sp.csr_matrix:
        """A matrix stored as ``scipy.sparse.save_npz`` does (keys after ``prefix``).

        CSR, CSC and COO layouts are read; ``format`` defaults to CSR.
        """
        fail = lambda reason: InputError(reason, source=self.source, field=field)  # noqa: E731
        shape = self.array(prefix + "shape", field, expected=(2,), kinds="iu")
        shape = check_shape([int(d) for d in shape], source=self.source, field=field, dense=False,
                            expected=expected)
        fmt = "csr"
        if prefix + "format" in self.keys:
            raw = self.array(prefix + "format", field, kinds="SU")
            fmt = raw.item().decode() if isinstance(raw.item(), bytes) else str(raw.item())
        index_keys = {"csr": ("indices", "indptr"), "csc": ("indices", "indptr"), "coo": ("row", "col")}
        if fmt not in index_keys:
            raise fail(f"sparse format '{fmt}' is not supported (use csr, csc or coo)")
        first, second = index_keys[fmt]
        data = self.array(prefix + "data", field, kinds="biuf")
        one = self.array(prefix + first, field, kinds="iu")
        two = self.array(prefix + second, field, kinds="iu")
        try:
            if fmt == "coo":
                return sp.csr_matrix(sp.coo_matrix((data, (one, two)), shape=shape), dtype=np.float64)
            mat = (sp.csr_matrix if fmt == "csr" else sp.csc_matrix)((data, one, two), shape=shape)
            mat.check_format(full_check=True)  # index bounds, which the constructor skips
            return sp.csr_matrix(mat, dtype=np.float64)
        except (ValueError, IndexError, TypeError) as exc:
            raise fail(f"inconsistent sparse arrays ({exc})") from None


def load_mtx(path: Path, *, source: str, field: str, expected=None):
    import scipy.io as sio

    try:
        rows, cols, entries, layout, kind, _ = sio.mminfo(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable Matrix Market file ({exc})", source=source, field=field) from None
    check_shape((rows, cols), source=source, field=field, dense=(layout == "array"), expected=expected)
    if entries > MAX_ENTRIES:
        raise InputError(f"claims {entries} entries; at most {MAX_ENTRIES} are accepted",
                         source=source, field=field)
    if kind == "complex":
        raise InputError("holds complex numbers; only real numbers are accepted", source=source, field=field)
    try:
        mat = sio.mmread(str(path))
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"cannot read {path.name} ({exc})", source=source, field=field) from None
    return sp.csr_matrix(mat, dtype=np.float64) if sp.issparse(mat) else np.asarray(mat, dtype=np.float64)


def split_rows(C, lower, upper, row_names) -> dict:
    """Rows ``l ≤ Cx ≤ u`` as QP fields A, b, G, h with constraint names.

    Uses the qpbenchmark split, so every reader orders rows the same way:
    equalities in row order, then the upper sides, then the lower sides. A
    one-sided row keeps its name; the two sides of a ranged row are told apart
    by ``:hi`` and ``:lo``.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    A, b, G, h, eq_rows, ineq_rows = split_two_sided_rows(C, lower, upper)
    ranged = np.isfinite(lower) & np.isfinite(upper)
    side = {+1: ":hi", -1: ":lo"}
    ineq_names = [row_names[i] + (side[s] if ranged[i] else "") for i, s in ineq_rows]
    return dict(A=A, b=b, G=G, h=h, eq_names=[row_names[i] for i in eq_rows], ineq_names=ineq_names)
