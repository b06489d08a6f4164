"""QPS/MPS reader on small handwritten files, free and fixed format."""
import numpy as np
import pytest

from snn_compile import InputError
from snn_compile.frontends import read_problem, read_qps

# x1..x7 exercise every bound type, rows e1..g2 every RANGES rule:
#   e1: 1 ≤ x1 + x4 ≤ 3 (E, R>0)     e2: −1 ≤ x2 + 2x7 ≤ 2 (E, R<0)   e3: x3 = 3
#   e0: x4 = 1 (E, R=0)              l1: 1 ≤ 2x1 ≤ 5 (L, R<0)         g1: 6 ≤ x2 ≤ 11 (G, R<0)
#   l2: x3 + 3x6 ≤ 7                 g2: x2 − x5 ≥ 8                  spare: a second N row, ignored
SECTIONS = {
    "head": """\
NAME          TESTQP
* a comment line
ROWS
 N  cost
 E  e1
 E  e2
 E  e3
 E  e0
 L  l1
 G  g1
 L  l2
 G  g2
 N  spare
COLUMNS
    x1  cost  1.0   e1  1.0
    x1  l1    2.0   spare  9.0
    x2  cost  -2.0  e2  1.0
    x2  g1    1.0   g2  1.0
    x3  e3    1.0   l2  1.0
    x4  e0    1.0   e1  1.0
    x5  cost  0.5   g2  -1.0
    x6  l2    3.0
    x7  e2    2.0
RHS
    RHS  cost  -7.0  e1  1.0
    RHS  e2    2.0   e3  3.0
    RHS  e0    1.0   l1  5.0
    RHS  g1    6.0   l2  7.0
    RHS  g2    8.0   spare  99.0
RANGES
    RNG  e1  2.0   e2  -3.0
    RNG  e0  0.0   l1  -4.0
    RNG  g1  -5.0
BOUNDS
 UP BND  x1  4.0
 FR BND  x2
 MI BND  x3
 UP BND  x3  5.0
 LO BND  x4  -2.0
 PL BND  x4
 FX BND  x5  1.5
 UP BND  x6  -3.0
 UP BND  x7  -1.0
 LO BND  x7  -6.0
""",
    "QUADOBJ": """\
QUADOBJ
    x1  x1  2.0
    x1  x2  0.5
    x2  x2  1.0
    x3  x3  4.0
""",
    "QUADOBJ_upper": """\
QUADOBJ
    x1  x1  2.0
    x2  x1  0.5
    x2  x2  1.0
    x3  x3  4.0
""",
    "QSECTION": """\
QSECTION      cost
    x1  x1  2.0
    x2  x1  0.5
    x2  x2  1.0
    x3  x3  4.0
""",
    "QMATRIX": """\
QMATRIX
    x1  x1  2.0
    x1  x2  0.5
    x2  x1  0.5
    x2  x2  1.0
    x3  x3  4.0
""",
}


def free_text(quadratic="QUADOBJ"):
    return SECTIONS["head"] + SECTIONS[quadratic] + "ENDATA\n"


def fixed_line(*fields):
    """A fixed-format data line: fields at columns 2-3, 5-12, 15-22, 25-36, 40-47, 50-61."""
    line = [" "] * 61
    for start, text in zip((1, 4, 14, 24, 39, 49), fields):
        line[start:start + len(text)] = text
    return "".join(line).rstrip()


def to_fixed(text):
    """Re-render a free-format file (with vector names everywhere) in fixed format."""
    out, section = [], None
    for line in text.splitlines():
        if not line.strip() or line.startswith("*") or not line[0].isspace():
            section = line.split()[0] if line.strip() and not line.startswith("*") else section
            out.append(line)
            continue
        t = line.split()
        if section == "ROWS":
            out.append(fixed_line(t[0], t[1]))
        elif section == "BOUNDS":
            out.append(fixed_line(t[0], t[1], t[2], *t[3:]))
        elif section in ("QUADOBJ", "QMATRIX", "QSECTION"):
            out.append(fixed_line("", t[0], t[1], t[2]))
        else:  # COLUMNS, RHS, RANGES: name, row, value[, row, value]
            out.append(fixed_line("", *t))
    return "\n".join(out) + "\n"


@pytest.fixture
def write(tmp_path):
    def _write(text, name="test.qps"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return _write


def test_free_format_file_gives_the_expected_qp(write):
    qp = read_qps(write(free_text()))
    assert qp.name == "test"  # the file name, not the NAME record
    assert qp.var_names == tuple(f"x{i}" for i in range(1, 8))
    assert qp.r == 7.0  # RHS on the objective row is minus the constant
    np.testing.assert_array_equal(qp.q, [1, -2, 0, 0, 0.5, 0, 0])
    P = np.zeros((7, 7))
    P[0, 0], P[0, 1], P[1, 0], P[1, 1], P[2, 2] = 2, 0.5, 0.5, 1, 4
    np.testing.assert_array_equal(qp.P.toarray(), P)
    inf = np.inf
    # x1: UP; x2: FR; x3: MI+UP; x4: LO+PL; x5: FX; x6: negative UP, no LO; x7: negative UP + LO
    np.testing.assert_array_equal(qp.lb, [0, -inf, -inf, -2, 1.5, -inf, -6])
    np.testing.assert_array_equal(qp.ub, [4, inf, 5, inf, 1.5, -3, -1])

    assert qp.eq_names == ("e3", "e0")
    np.testing.assert_array_equal(qp.A.toarray(), [[0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(qp.b, [3, 1])

    a = {"e1": [1, 0, 0, 1, 0, 0, 0], "e2": [0, 1, 0, 0, 0, 0, 2], "l1": [2, 0, 0, 0, 0, 0, 0],
         "g1": [0, 1, 0, 0, 0, 0, 0], "l2": [0, 0, 1, 0, 0, 3, 0], "g2": [0, 1, 0, 0, -1, 0, 0]}
    lower = {"e1": 1, "e2": -1, "l1": 1, "g1": 6, "g2": 8}
    upper = {"e1": 3, "e2": 2, "l1": 5, "g1": 11, "l2": 7}
    # upper sides first, then lower sides; only ranged rows carry :hi / :lo
    assert qp.ineq_names == ("e1:hi", "e2:hi", "l1:hi", "g1:hi", "l2",
                             "e1:lo", "e2:lo", "l1:lo", "g1:lo", "g2")
    for k, name in enumerate(qp.ineq_names):
        row = name.split(":")[0]
        is_upper = name.endswith(":hi") or name == "l2"
        sign = 1 if is_upper else -1
        np.testing.assert_array_equal(qp.G.toarray()[k], sign * np.array(a[row]), err_msg=name)
        assert qp.h[k] == (upper[row] if is_upper else -lower[row]), name


def test_fixed_format_gives_the_same_qp_as_free_format(write):
    free = read_qps(write(free_text(), "free.qps"))
    fixed_path = write(to_fixed(free_text()), "fixed.qps")
    for fixed in (read_qps(fixed_path, fixed=True), read_qps(fixed_path)):
        assert fixed.content_hash() == free.content_hash()
        assert (fixed.var_names, fixed.ineq_names, fixed.eq_names) == \
               (free.var_names, free.ineq_names, free.eq_names)


def test_fixed_format_names_may_contain_blanks(write):
    text = "\n".join([
        "NAME          SPACES", "ROWS", fixed_line("N", "obj"), fixed_line("L", "my row"),
        "COLUMNS", fixed_line("", "x 1", "obj", "1.0", "my row", "1.0"),
        fixed_line("", "x 2", "my row", "1.0"),
        "RHS", fixed_line("", "", "my row", "2.0"),  # blank RHS vector name
        "BOUNDS", fixed_line("UP", "bnd", "x 1", "3.0"),
        "QUADOBJ", fixed_line("", "x 1", "x 1", "1.0"), fixed_line("", "x 2", "x 2", "1.0"),
        "ENDATA", ""])
    path = write(text)
    with pytest.raises(InputError):
        read_qps(path, fixed=False)
    qp = read_qps(path)  # free format fails, fixed format is tried next
    assert qp.var_names == ("x 1", "x 2") and qp.ineq_names == ("my row",)
    np.testing.assert_array_equal(qp.G.toarray(), [[1, 1]])
    np.testing.assert_array_equal(qp.h, [2])
    np.testing.assert_array_equal(qp.ub, [3, np.inf])


@pytest.mark.parametrize("quadratic", ["QUADOBJ_upper", "QSECTION", "QMATRIX"])
def test_every_quadratic_section_spelling_gives_the_same_P(write, quadratic):
    reference = read_qps(write(free_text("QUADOBJ"), "a.qps"))
    other = read_qps(write(free_text(quadratic), "b.qps"))
    assert other.content_hash() == reference.content_hash()


def test_free_format_vector_names_are_optional(write):
    text = """NAME
ROWS
 N obj
 L c
COLUMNS
 x obj 1 c 1
 y c 1
RHS
 c 4
BOUNDS
 UP x 2
 FR y
QUADOBJ
 x x 1
 y y 1
ENDATA
"""
    qp = read_qps(write(text))
    np.testing.assert_array_equal(qp.h, [4])
    np.testing.assert_array_equal(qp.lb, [0, -np.inf])
    np.testing.assert_array_equal(qp.ub, [2, np.inf])


def test_huge_bounds_mean_infinity_and_nan_is_refused(write):
    text = free_text().replace(" UP BND  x1  4.0", " UP BND  x1  1e30").replace(
        "    RHS  g1    6.0   l2  7.0", "    RHS  g1    6.0   l2  1e20")
    qp = read_qps(write(text))
    assert qp.ub[0] == np.inf and "l2" not in qp.ineq_names  # l2 ≤ +∞ constrains nothing
    with pytest.raises(InputError, match="not a number"):
        read_qps(write(free_text().replace(" UP BND  x1  4.0", " UP BND  x1  nan")))


@pytest.mark.parametrize("sense", ["OBJSENSE\n    MAX\n", "OBJSENSE MAX\n"])
def test_objsense_max_becomes_minimising_the_negated_objective(write, sense):
    # maximise −½x² − ½y² + x + y − 2  s.t.  x + y ≤ 1
    text = sense + """NAME
ROWS
 N obj
 L c
COLUMNS
    x  obj  1  c  1
    y  obj  1  c  1
RHS
    RHS  c  1  obj  2
QUADOBJ
    x  x  -1
    y  y  -1
ENDATA
"""
    qp = read_qps(write(text))
    np.testing.assert_array_equal(qp.P.toarray(), np.eye(2))
    np.testing.assert_array_equal(qp.q, [-1, -1])
    assert qp.r == 2.0


def test_integer_markers_and_binary_bounds_are_relaxed(write):
    text = """NAME
ROWS
 N obj
 L c
COLUMNS
    MARKER                 'MARKER'                 'INTORG'
    x  obj  -1  c  1
    y  c  1
    MARKER                 'MARKER'                 'INTEND'
RHS
    RHS  c  1.5
BOUNDS
 BV BND  x
 UI BND  y  3
ENDATA
"""
    qp = read_qps(write(text))
    np.testing.assert_array_equal(qp.lb, [0, 0])
    np.testing.assert_array_equal(qp.ub, [1, 3])


def test_mps_suffix_and_upper_case_suffix_dispatch_to_the_qps_reader(write):
    for name in ("a.mps", "b.QPS", "c.Mps"):
        assert read_problem(write(free_text(), name)).n == 7


def _one_line(err, path):
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    return err.value


@pytest.mark.parametrize("edit, field, message", [
    (lambda t: t.replace("    x6  l2    3.0", "    x6  nowhere  3.0"), "COLUMNS", "not declared in ROWS"),
    (lambda t: t.replace("ENDATA\n", ""), "QUADOBJ", "without ENDATA"),
    (lambda t: t.replace(" UP BND  x1  4.0", " XX BND  x1  4.0"), "BOUNDS", "unknown bound type"),
    (lambda t: t.replace(" UP BND  x1  4.0", " UP BND  x9  4.0"), "BOUNDS", "not declared in COLUMNS"),
    (lambda t: t.replace(" UP BND  x1  4.0", " SC BND  x1  4.0"), "BOUNDS", "semi-continuous"),
    (lambda t: t.replace("    RHS  e2    2.0", "    RHS  e2    two"), "RHS", "not a number"),
    (lambda t: t.replace(" L  l2", " Q  l2"), "ROWS", "unknown row type"),
    (lambda t: t.replace("    x3  x3  4.0", "    x3  x3  4.0\n    x2  x1  0.5"), "QUADOBJ", "both triangles"),
    (lambda t: t.replace("QUADOBJ", "QCMATRIX"), "QCMATRIX", "not supported"),
    (lambda t: t.replace("RANGES", "RANGERS"), "RANGERS", "unknown section"),
])
def test_malformed_files_are_refused_with_file_field_and_line(write, edit, field, message):
    path = write(edit(free_text()))
    with pytest.raises(InputError) as err:
        read_qps(path)
    error = _one_line(err, path)
    assert message in error.reason and error.line is not None and error.field == field


def test_p_that_is_not_psd_is_refused_naming_P(write):
    path = write(free_text().replace("    x3  x3  4.0", "    x3  x3  -4.0"))
    with pytest.raises(InputError) as err:
        read_qps(path)
    assert _one_line(err, path).field == "P"
