"""The integer executor's numba kernel (``backends/_kernels_fixed.py``) against its
numpy path: integer states, saturation statistics, spikes and control logs must be
*identical*, on every chip format and family, including accumulator saturation,
left shifts and more slices than one compiled pass takes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from snn_compile.lower import lower
from snn_compile.backends.reference import simulate
from snn_compile.backends.reference_fixed import run_fixed
from snn_compile.errors import InputError
from snn_compile.hardware import load_hardware, parse_hardware
from snn_compile.ir.fixed_point import shift_round
from snn_compile.passes.quantize import quantize

pytest.importorskip("numba")
from snn_compile.backends._kernels_fixed import FusedSlices, _shift  # noqa: E402

from test_kernels import sparse_qp  # noqa: E402


def chip(name: str, **changes):
    """A shipped hardware config with some ``section.field`` values changed."""
    doc = load_hardware(name).to_dict()
    for key, value in changes.items():
        section, field = key.split(".")
        doc[section][field] = value
    return parse_hardware(yaml.safe_dump(doc, allow_unicode=True), source=f"{name} variant")


def assert_same_integer_runs(net, steps, **options):
    numpy_run = run_fixed(net, steps, kernel="numpy", **options)
    numba_run = run_fixed(net, steps, kernel="numba", **options)
    assert numpy_run.meta["kernel"] == "numpy" and numba_run.meta["kernel"] == "numba"
    a, b = numpy_run.meta["fixed_point"], numba_run.meta["fixed_point"]
    assert a["overflow"] == b["overflow"]
    for name, state in a["integer_state"].items():
        assert state.tobytes() == b["integer_state"][name].tobytes(), name
    for name, counts in numpy_run.spike_counts.items():
        assert np.array_equal(counts, numba_run.spike_counts[name]), name
    for name, events in numpy_run.events.items():
        for column_a, column_b in zip(events, numba_run.events[name]):
            assert np.asarray(column_a).tobytes() == np.asarray(column_b).tobytes(), name
    assert numpy_run.control_log == numba_run.control_log
    assert numpy_run.gains_final == numba_run.gains_final
    return numpy_run


@pytest.mark.parametrize("hardware, family, slices", [
    ("loihi2", "primal-dual", 3),
    ("loihi2", "primal-dual", 5),          # two compiled passes per row (3 + 2 slices)
    ("loihi2", "projection", 2),
    ("loihi1", "lif", 1),
    ("spinnaker1", "lif", 3),              # accumulates before the shift: saturating sums
])
def test_numba_equals_numpy_on_quantized_networks(hardware, family, slices):
    net, _ = quantize(lower(sparse_qp(), family), hardware, weight_slices=slices, overflow_check_steps=0)
    assert_same_integer_runs(net, 400)


def test_per_row_exponents_and_restarts():
    hw = chip("loihi2", **{"weights.per_row_exponent": True})
    net, _ = quantize(lower(sparse_qp(seed=3), "primal-dual"), hw, overflow_check_steps=0)
    trace = assert_same_integer_runs(net, 600)
    assert any(event.get("event") == "restart" for event in trace.control_log)


@pytest.mark.parametrize("before_shift", [True, False])
def test_accumulator_saturation_is_counted_alike(before_shift):
    """A 10-bit accumulator clips most sums (of mantissas before the shift, or of the
    shifted input after it)."""
    hw = chip("loihi2", **{"weights.shift_per_synapse_type": before_shift, "state.accumulator_bits": 10})
    net, _ = quantize(lower(sparse_qp(), "primal-dual"), hw, overflow_check_steps=0)
    trace = assert_same_integer_runs(net, 200)
    overflow = trace.meta["fixed_point"]["overflow"]
    assert sum(s["input_saturations"] for s in overflow.values()) > 0


def test_state_saturation_and_clamps_are_counted_alike():
    """Scales with 3 bits too few (headroom −3): states saturate, and clamps hide some of it."""
    qnet, _ = quantize(lower(sparse_qp(), "primal-dual"), "loihi2", headroom_bits=-3, overflow_check_steps=0)
    overflow = assert_same_integer_runs(qnet, 300).meta["fixed_point"]["overflow"]
    assert sum(s["state_saturations"] for s in overflow.values()) > 0
    assert sum(s["masked_by_clamp"] for s in overflow.values()) > 0
    assert sum(s["unmasked_saturations"] for s in overflow.values()) > 0


def test_shift_matches_shift_round_for_every_shift():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-2**60, 2**60, 400), rng.integers(-1000, 1000, 400), [0, 1, -1]])
    for s in range(-70, 71):
        expected = shift_round(x, s)
        assert [_shift(int(value), s) for value in x] == expected.tolist(), s


def test_fused_slices_equal_the_per_slice_sums():
    """Random slices with different sparsity patterns, per-row exponents (left and right
    shifts) and gains, against docs/ir.md §5.2 written out with numpy."""
    rng = np.random.default_rng(1)
    rows, cols = 40, 30
    matrices = [sp.random(rows, cols, density=d, random_state=k, format="csr",
                          data_rvs=lambda n: rng.integers(-127, 128, n)).astype(np.int64)
                for k, d in enumerate((0.3, 0.1, 0.2, 0.05))]
    exponents = [rng.integers(-30, 8, rows), -12, rng.integers(-5, 5, rows), 3]
    e = rng.integers(-2**20, 2**20, cols)
    for g_m, g_e, has_gain in ((1, 0, False), (-23456, -14, True), (32767, 10, True)):
        expected = np.zeros(rows, np.int64)
        for M, E in zip(matrices, exponents):
            a = M @ e
            expected += shift_round(a * g_m, -(g_e + np.asarray(E))) if has_gain else shift_round(a, -np.asarray(E))
        I = np.zeros(rows, np.int64)
        FusedSlices(matrices, exponents).accumulate(I, e, g_m, g_e, has_gain)
        assert I.tolist() == expected.tolist()
    fused = FusedSlices(matrices, exponents)
    I = np.zeros(rows, np.int64)
    fused.accumulate(I, e, 1, 0, False, acc_limit=2**22)
    sums = np.stack([M @ e for M in matrices])
    assert fused.stats.tolist() == [int(np.abs(sums).max()), int(np.count_nonzero(np.abs(sums) > 2**22))]
    clipped = np.clip(sums, -2**22, 2**22)
    assert I.tolist() == sum(shift_round(c, -np.asarray(E)) for c, E in zip(clipped, exponents)).tolist()


def test_reference_target_passes_the_kernel_option_on():
    net, _ = quantize(lower(sparse_qp(), "primal-dual"), "loihi2", overflow_check_steps=0)
    a = simulate(net, 100, kernel="numpy")
    b = simulate(net, 100, kernel="numba")
    assert (a.meta["kernel"], b.meta["kernel"]) == ("numpy", "numba")
    assert all(a.final_state[n].tobytes() == b.final_state[n].tobytes() for n in a.final_state)
    with pytest.raises(InputError, match="kernel"):
        simulate(net, 10, kernel="fortran")


def test_diagonal_slices_take_the_vectorised_path_with_the_same_sums():
    rng = np.random.default_rng(2)
    n = 50
    matrices = [sp.diags(rng.integers(-127, 128, n)).tocsr().astype(np.int64) for _ in range(3)]
    exponents = [-20, 3, -7]                         # a left shift too
    e = rng.integers(-2**20, 2**20, n)
    fused = FusedSlices(matrices, exponents)
    assert fused.diagonal_exponents is not None
    assert FusedSlices(matrices, [rng.integers(-9, 0, n), 3, -7]).diagonal_exponents is None
    for g_m, g_e, has_gain in ((1, 0, False), (-23456, -14, True)):
        I = np.zeros(n, np.int64)
        fused.accumulate(I, e, g_m, g_e, has_gain)
        expected = sum(shift_round((M @ e) * g_m, -(g_e + E)) if has_gain else shift_round(M @ e, -E)
                       for M, E in zip(matrices, exponents))
        assert I.tolist() == expected.tolist()
