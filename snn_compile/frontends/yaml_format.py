"""``problem.yaml`` / ``.json``: the project's own problem format (see docs/problem-format.md).

Only ``yaml.SafeLoader`` is used, and aliases (``*name``) are refused: they let
a few bytes expand into a huge list. Every size a file claims is checked
against the sizes implied by ``q``, ``h`` and ``b`` before anything of that
size is allocated.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import yaml

from ..errors import InputError
from ..qp import QP
from ._common import (MAX_DIM, MAX_ENTRIES, NpzArchive, build_qp, check_shape, existing_file, load_mtx,
                      load_npy)

FORMAT = "snn-compile/qp"
VERSION = 1

_MATRICES = ("P", "G", "A")
_VECTORS = ("q", "h", "b", "lb", "ub")
_NAMES = ("var_names", "ineq_names", "eq_names")
_KEYS = {"format", "version", "name", "description", "metadata", "n", "r", *_MATRICES, *_VECTORS, *_NAMES}


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a problem file",
                self.peek_event().start_mark)
        return super().compose_node(parent, index)


def read_yaml(path, *, name: str | None = None) -> QP:
    path = existing_file(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file as UTF-8 text ({exc})", source=source) from None
    doc, lines = _parse(text, source, is_json=path.suffix.lower() == ".json")
    return _Reader(doc, lines, source, path.parent).qp(name)


def _parse(text: str, source: str, *, is_json: bool) -> tuple[dict, dict]:
    """The document and the 1-based line of each key (``P``, ``P.shape``, …)."""
    loader = _NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        if is_json:  # JSON that PyYAML refuses (tab indentation, say) is still JSON
            return _parse_json(text, source), {}
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark:  # where the unfinished construct began, e.g. an unclosed [
            reason = f"{context} that starts on line {context_mark.line + 1}: {reason}"
        raise InputError(f"not valid YAML: {reason}", source=source,
                         line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise InputError("nested too deeply", source=source) from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise InputError("the document must be a mapping of field names to values", source=source,
                         line=node.start_mark.line + 1 if node is not None else None)
    return doc, _key_lines(node, source)


def _parse_json(text: str, source: str) -> dict:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except RecursionError:
        raise InputError("nested too deeply", source=source) from None
    if not isinstance(doc, dict):
        raise InputError("the document must be an object of field names to values", source=source)
    return doc


def _key_lines(node, source: str) -> dict:
    lines = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in lines:
            raise InputError(f"key '{key}' appears twice", source=source, field=key,
                             line=key_node.start_mark.line + 1)
        lines[key] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                lines.setdefault(f"{key}.{sub_key.value}", sub_key.start_mark.line + 1)
    return lines


class _Reader:
    def __init__(self, doc: dict, lines: dict, source: str, folder: Path):
        self.doc, self.lines, self.source, self.folder = doc, lines, source, folder

    def fail(self, field: str | None, reason: str) -> InputError:
        return InputError(reason, source=self.source, field=field, line=self.line_of(field))

    def line_of(self, field: str | None):
        while field:
            if field in self.lines:
                return self.lines[field]
            field = field.rpartition(".")[0]
        return None

    def qp(self, name: str | None) -> QP:
        doc = self.doc
        self._check_header()
        q = self.vector("q", None)
        n = q.size
        if "n" in doc and self._count("n") != n:
            raise self.fail("n", f"n = {doc['n']} but q has {n} entries")
        h, b = self.vector("h", None), self.vector("b", None)
        m_in, m_eq = (0 if h is None else h.size), (0 if b is None else b.size)
        for mat, vec in (("G", "h"), ("A", "b")):
            if (doc.get(mat) is None) != (doc.get(vec) is None):
                missing = vec if doc.get(vec) is None else mat
                raise self.fail(missing, f"{mat} and {vec} must be given together; '{missing}' is missing")
        fields = dict(
            q=q, h=h, b=b,
            P=self.matrix("P", (n, n)), G=self.matrix("G", (m_in, n)), A=self.matrix("A", (m_eq, n)),
            lb=self.vector("lb", n), ub=self.vector("ub", n), r=self._scalar("r"),
            name=name or self._text("name") or Path(self.source).stem,
            **{key: self._names(key) for key in _NAMES})
        return build_qp(self.source, self.line_of, **fields)

    # ------------------------------------------------------------- header
    def _check_header(self):
        unknown = sorted(set(map(str, self.doc)) - _KEYS)
        if unknown:
            raise self.fail(unknown[0], f"unknown field '{unknown[0]}' (allowed: {', '.join(sorted(_KEYS))})")
        fmt, version = self.doc.get("format"), self.doc.get("version")
        if fmt != FORMAT:
            raise self.fail("format", f"must be '{FORMAT}', got {fmt!r}" if fmt is not None
                            else f"missing: a problem file starts with 'format: {FORMAT}'")
        if version != VERSION:
            raise self.fail("version", f"this reader understands version {VERSION}, got {version!r}"
                            if version is not None else f"missing: add 'version: {VERSION}'")

    def _count(self, key: str) -> int:
        value = self.doc[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_DIM:
            raise self.fail(key, f"must be a positive integer up to {MAX_DIM}, got {value!r}")
        return value

    def _scalar(self, key: str) -> float:
        value = self.doc.get(key, 0.0)
        try:
            if isinstance(value, (list, dict, bool)):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise self.fail(key, f"must be a number, got {value!r}") from None

    def _text(self, key: str):
        value = self.doc.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def _names(self, key: str):
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > MAX_DIM or any(
                isinstance(v, (list, dict)) or v is None for v in value):
            raise self.fail(key, "must be a list of names")
        return [str(v) for v in value]

    # ------------------------------------------------------------- vectors
    def vector(self, key: str, length: int | None):
        """A vector; ``length`` None means 'any length' (it defines a size)."""
        value = self.doc.get(key)
        if value is None:
            if key == "q":
                raise self.fail(key, "is required: the linear cost, one entry per variable")
            return None
        if isinstance(value, dict):
            array = self._file_array(key, value, expected=None if length is None else (length,))
            if array.ndim != 1:
                raise self.fail(f"{key}.file", f"must hold a 1-D array, got shape {array.shape}")
            return array
        if not isinstance(value, list):
            if length is None or key not in ("lb", "ub"):
                raise self.fail(key, f"must be a list of numbers, got {value!r}")
            value = [value]  # a scalar bound applies to every variable
            value *= length
        if len(value) > MAX_DIM:
            raise self.fail(key, f"has {len(value)} entries; at most {MAX_DIM} are accepted")
        if any(isinstance(v, (list, dict)) for v in value):
            raise self.fail(key, "must be a flat list of numbers")
        return self._floats(key, value)

    def _floats(self, key: str, value) -> np.ndarray:
        # numeric strings count: YAML 1.1 reads 1e-3 (no dot) and inf as strings
        try:
            return np.array([np.nan if v is None else v for v in value], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self.fail(key, f"holds something that is not a number ({exc})") from None

    # ------------------------------------------------------------- matrices
    def matrix(self, key: str, shape: tuple[int, int]):
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, dict):
            if "file" in value:
                return self._file_array(key, value, expected=shape, matrix=True)
            return self._triplets(key, value, shape)
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of rows, a {shape, rows, cols, vals} mapping "
                                 "or a {file: ...} reference")
        if shape[0] == 1 and value and not isinstance(value[0], list):
            value = [value]  # a one-row matrix may be written as a flat list
        check_shape(shape, source=self.source, field=key, dense=True, line=self.line_of(key))
        if len(value) != shape[0]:
            raise self.fail(key, f"expected {shape[0]} rows, got {len(value)}")
        for i, row in enumerate(value):
            if not isinstance(row, list) or len(row) != shape[1]:
                got = f"{len(row)} entries" if isinstance(row, list) else repr(row)
                raise self.fail(key, f"row {i} must be a list of {shape[1]} numbers, got {got}")
        try:
            return np.array(value, dtype=np.float64).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise self.fail(key, f"holds something that is not a number ({exc})") from None

    def _triplets(self, key: str, value: dict, shape: tuple[int, int]) -> sp.csr_matrix:
        extra = set(value) - {"shape", "rows", "cols", "vals"}
        if extra:
            raise self.fail(f"{key}.{sorted(extra)[0]}", "unknown key in a sparse matrix "
                                                         "(expected shape, rows, cols, vals)")
        for part in ("shape", "rows", "cols", "vals"):
            if part not in value:
                raise self.fail(f"{key}.{part}", "is required in a sparse matrix")
        check_shape(value["shape"], source=self.source, field=f"{key}.shape", dense=False,
                    expected=shape, line=self.line_of(f"{key}.shape"))
        rows, cols, vals = value["rows"], value["cols"], value["vals"]
        for part, items in (("rows", rows), ("cols", cols), ("vals", vals)):
            if not isinstance(items, list) or len(items) > MAX_ENTRIES:
                raise self.fail(f"{key}.{part}", f"must be a list of at most {MAX_ENTRIES} entries")
        if not len(rows) == len(cols) == len(vals):
            raise self.fail(key, f"rows, cols and vals differ in length "
                                 f"({len(rows)}, {len(cols)}, {len(vals)})")
        i = self._indices(f"{key}.rows", rows, shape[0])
        j = self._indices(f"{key}.cols", cols, shape[1])
        return sp.csr_matrix((self._floats(f"{key}.vals", vals), (i, j)), shape=shape)

    def _indices(self, field: str, items: list, bound: int) -> np.ndarray:
        bad = next((v for v in items if type(v) is not int or not 0 <= v < bound), None)
        if bad is not None:
            raise self.fail(field, f"indices must be integers in [0, {bound}), got {bad!r}")
        return np.array(items, dtype=np.int64)

    # ------------------------------------------------------------- files
    def _file_array(self, key: str, ref: dict, *, expected, matrix: bool = False):
        try:
            return self._load_file_array(key, ref, expected=expected, matrix=matrix)
        except InputError as err:  # the loaders know the file, not the line of the reference
            raise err.located(line=self.line_of(key)) from None

    def _load_file_array(self, key: str, ref: dict, *, expected, matrix: bool):
        extra = set(ref) - {"file", "key"}
        if extra or not isinstance(ref.get("file"), str):
            raise self.fail(key, "a file reference is {file: name.npz, key: array} "
                                 "or {file: name.npy|name.mtx}")
        path = self._resolve(key, ref["file"])
        suffix = path.suffix.lower()
        field, array_key = f"{key}.file", ref.get("key")
        if suffix == ".npy":
            return load_npy(path, source=self.source, field=field, expected=expected)
        if suffix == ".mtx" and matrix:
            return load_mtx(path, source=self.source, field=field, expected=expected)
        if suffix != ".npz":
            kinds = ".npy, .npz or .mtx" if matrix else ".npy or .npz"
            raise self.fail(field, f"'{ref['file']}' is not a {kinds} file")
        with NpzArchive(path, source=self.source, field=field) as archive:
            if array_key is None and matrix and archive.is_scipy_sparse():
                return archive.sparse("", field, expected=expected)
            if array_key is None:
                if len(archive.keys) != 1:
                    raise self.fail(field, f"'{ref['file']}' holds several arrays; name one with 'key'")
                array_key = next(iter(archive.keys))
            return archive.array(str(array_key), field, expected=expected)

    def _resolve(self, key: str, name: str) -> Path:
        """A referenced file, which must lie in the problem file's folder or below it."""
        field, relative = f"{key}.file", Path(name)
        root = self.folder.resolve()
        path = (root / relative).resolve()
        if relative.is_absolute() or not path.is_relative_to(root):
            raise self.fail(field, f"'{name}' must be a path inside the problem file's folder")
        if not path.is_file():
            raise self.fail(field, f"referenced file '{name}' not found next to the problem file")
        return path
