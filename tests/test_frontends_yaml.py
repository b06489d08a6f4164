"""problem.yaml / .json reader: schema, file references, errors and size limits."""
import json
import re
import tracemalloc
import zipfile
from io import BytesIO

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from snn_compile import InputError
from snn_compile.classical import reference_solution
from snn_compile.frontends import read_problem

HAND2 = """\
format: snn-compile/qp
version: 1
name: hand2
P: [[1, 0], [0, 1]]
q: [-1, -1]
G: [[1, 1]]
h: [1]
lb: 0
ub: [1, 1]
var_names: [x1, x2]
"""


@pytest.fixture
def write(tmp_path):
    def _write(text, name="problem.yaml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
    return _write


def refused(path, field=None, line=None):
    """The InputError reading ``path`` raises; checks it is one line naming file and field."""
    with pytest.raises(InputError) as err:
        read_problem(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    if field is not None:
        assert err.value.field == field and f"field '{field}'" in message, message
    if line is not None:
        assert err.value.line == line and f"{path}:{line}" in message, message
    return err.value


def line_of(text, key):
    """The line of the last occurrence of ``key`` (a repeated key is reported there)."""
    return max(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(key + ":"))


# ---------------------------------------------------------------- documented examples
def test_worked_example_in_the_docs_loads_and_solves(repo_root, write):
    doc = (repo_root / "docs" / "problem-format.md").read_text()
    section = doc.split("### Worked example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    qp = read_problem(write(block))
    assert (qp.name, qp.n, qp.m_eq, qp.m_ineq) == ("worked-example", 3, 1, 2)
    assert qp.var_names == ("x", "y", "z") and qp.ineq_names == ("spread", "order")
    np.testing.assert_array_equal(qp.P.toarray(), [[2, 0, 0], [0, 1, 0.5], [0, 0.5, 1]])
    np.testing.assert_array_equal(qp.lb, [0, 0, -np.inf])
    assert qp.r == 1.5
    np.testing.assert_allclose(reference_solution(qp).x, [2 / 3, 1 / 6, 1 / 6], atol=1e-7)


def test_hand2_example_has_its_documented_optimum(repo_root):
    qp = read_problem(repo_root / "examples" / "hand2" / "problem.yaml")
    solution = reference_solution(qp)
    np.testing.assert_allclose(solution.x, [0.5, 0.5], atol=1e-7)
    assert solution.obj == pytest.approx(-0.75, abs=1e-7)


def test_portfolio_example_reads_its_covariance_file(repo_root):
    qp = read_problem(repo_root / "examples" / "portfolio" / "problem.yaml")
    assert (qp.n, qp.m_eq, qp.m_ineq) == (8, 1, 1)
    assert qp.P.shape == (8, 8) and abs(qp.P - qp.P.T).max() == 0
    x = reference_solution(qp).x
    assert x.sum() == pytest.approx(1, abs=1e-7) and x.max() <= 0.25 + 1e-7


# ---------------------------------------------------------------- forms of a field
def test_dense_sparse_and_broadcast_forms_give_the_same_qp(write):
    sparse = HAND2.replace("P: [[1, 0], [0, 1]]", "P: {shape: [2, 2], rows: [0, 1], cols: [0, 1], vals: [1, 1]}")
    sparse = sparse.replace("G: [[1, 1]]", "G: [1, 1]").replace("lb: 0", "lb: [0.0, 0]")
    assert read_problem(write(HAND2, "a.yaml")).content_hash() == read_problem(write(sparse, "b.yaml")).content_hash()


def test_infinities_and_numeric_strings(write):
    qp = read_problem(write(HAND2.replace("ub: [1, 1]", "ub: [.inf, 'inf']").replace("h: [1]", "h: [1e-3]")))
    np.testing.assert_array_equal(qp.ub, [np.inf, np.inf])
    assert qp.h[0] == 1e-3  # YAML 1.1 reads 1e-3 as a string


def test_json_reads_like_yaml_even_with_tabs(write):
    doc = yaml.safe_load(HAND2)
    doc["ub"] = [float("inf"), 1]
    for indent in (None, "\t"):  # PyYAML refuses tab indentation; the json module reads it
        path = write(json.dumps(doc, indent=indent), "problem.json")
        qp = read_problem(path)
        np.testing.assert_array_equal(qp.ub, [np.inf, 1])
        assert qp.var_names == ("x1", "x2")


def test_name_argument_overrides_the_file(write):
    assert read_problem(write(HAND2), name="other").name == "other"


def test_file_references(write, tmp_path):
    np.save(tmp_path / "P.npy", np.eye(2))
    np.savez(tmp_path / "data.npz", q=np.array([-1.0, -1.0]), G=np.ones((1, 2)))
    (tmp_path / "sub").mkdir()
    sp.save_npz(tmp_path / "sub" / "Ps.npz", sp.csr_matrix(np.eye(2)))
    (tmp_path / "G.mtx").write_text("%%MatrixMarket matrix array real general\n1 2\n1\n1\n")
    base = read_problem(write(HAND2, "base.yaml"))
    variants = [
        HAND2.replace("P: [[1, 0], [0, 1]]", "P: {file: P.npy}"),
        HAND2.replace("P: [[1, 0], [0, 1]]", "P: {file: sub/Ps.npz}"),
        HAND2.replace("q: [-1, -1]", "q: {file: data.npz, key: q}").replace("G: [[1, 1]]", "G: {file: data.npz, key: G}"),
        HAND2.replace("G: [[1, 1]]", "G: {file: G.mtx}"),
    ]
    for i, text in enumerate(variants):
        assert read_problem(write(text, f"v{i}.yaml")).content_hash() == base.content_hash(), text


# ---------------------------------------------------------------- refusals
def test_syntax_error_names_the_line(write):
    path = write(HAND2.replace("h: [1]", "h: [1"))
    error = refused(path)
    assert error.line is not None and "not valid YAML" in error.reason


def test_json_syntax_error_names_the_line(write):
    path = write('{\n\t"format": "snn-compile/qp",\n\t"q": [1, 2\n}\n', "bad.json")
    assert refused(path).line == 4


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]"), "P"),  # wrong shape
    (lambda t: t.replace("G: [[1, 1]]", "G: [[1, 1, 1]]"), "G"),
    (lambda t: t.replace("h: [1]", "h: [1, 2]"), "G"),  # two rows of h, one row of G
    (lambda t: t.replace("q: [-1, -1]", "q: [-1, .nan]"), "q"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: [[1, 2], [0, 1]]"), "P"),  # asymmetric
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: [[1, 0], [0, -1]]"), "P"),  # indefinite
    (lambda t: t.replace("lb: 0", "lb: [0, 2]"), "lb"),  # lb > ub
    (lambda t: t.replace("ub: [1, 1]", "ub: [1, x]"), "ub"),
    (lambda t: t.replace("var_names: [x1, x2]", "var_names: [x1]"), "var_names"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: {file: missing.npz, key: P}"), "P.file"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: {file: ../outside.npy}"), "P.file"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: {file: /etc/passwd}"), "P.file"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: {shape: [2, 2], rows: [0, 2], cols: [0, 1], vals: [1, 1]}"), "P.rows"),
    (lambda t: t.replace("P: [[1, 0], [0, 1]]", "P: {shape: [2, 2], rows: [0], cols: [0, 1], vals: [1, 1]}"), "P"),
    (lambda t: t.replace("q: [-1, -1]\n", ""), "q"),
    (lambda t: t.replace("h: [1]\n", ""), "h"),
    (lambda t: t + "ubb: 3\n", "ubb"),
    (lambda t: t.replace("format: snn-compile/qp\n", ""), "format"),
    (lambda t: t.replace("version: 1", "version: 2"), "version"),
    (lambda t: t + "q: [1, 2]\n", "q"),  # duplicate key
    (lambda t: t.replace("r: 0\n", "") + "r: [1]\n", "r"),
])
def test_bad_fields_are_refused_with_file_field_and_line(write, edit, field):
    text = edit(HAND2)
    path = write(text)
    error = refused(path, field=field)
    key = field.split(".")[0]
    if any(ln.startswith(key + ":") for ln in text.splitlines()):
        assert error.line == line_of(text, key), error


def test_yaml_aliases_are_refused(write):
    text = HAND2.replace("lb: 0", "lb: &zero [0, 0]") + "metadata: {copy: *zero}\n"
    assert refused(write(text)).line == text.splitlines().index("metadata: {copy: *zero}") + 1


def test_a_document_that_is_not_a_mapping_is_refused(write):
    refused(write("- 1\n- 2\n"))
    refused(write(""))


def test_unknown_suffix_and_missing_file_name_the_file(tmp_path, write):
    error = refused(write(HAND2, "problem.txt"))
    assert "unknown problem file type" in error.reason
    assert "not found" in refused(tmp_path / "absent.yaml").reason


# ---------------------------------------------------------------- claimed sizes
def _npy_header(shape) -> bytes:
    buffer = BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue()  # a header only: the file claims 16 GB and holds none of it


HUGE = 2_000_000_000


@pytest.mark.parametrize("setup, field", [
    (lambda d: HAND2.replace("P: [[1, 0], [0, 1]]",
                             f"P: {{shape: [{HUGE}, {HUGE}], rows: [], cols: [], vals: []}}"), "P.shape"),
    (lambda d: HAND2 + f"n: {HUGE}\n", "n"),
    (lambda d: HAND2 + "n: 2e9\n", "n"),
    (lambda d: (d / "q.npy").write_bytes(_npy_header((HUGE,))) and
     HAND2.replace("q: [-1, -1]", "q: {file: q.npy}"), "q.file"),
    (lambda d: zipfile.ZipFile(d / "big.npz", "w").writestr("P.npy", _npy_header((HUGE, HUGE))) or
     HAND2.replace("P: [[1, 0], [0, 1]]", "P: {file: big.npz, key: P}"), "P.file"),
    (lambda d: (d / "P.mtx").write_text(f"%%MatrixMarket matrix coordinate real general\n{HUGE} {HUGE} 1\n1 1 1\n")
     and HAND2.replace("P: [[1, 0], [0, 1]]", "P: {file: P.mtx}"), "P.file"),
])
def test_huge_claimed_dimensions_are_refused_before_allocation(tmp_path, write, setup, field):
    path = write(setup(tmp_path))
    tracemalloc.start()
    try:
        refused(path, field=field)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6
