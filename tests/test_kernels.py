"""The numba kernel of the reference backend against its numpy path (the oracle).

Every comparison is of raw bytes: states, clamp excesses, averages, spike counts,
events, samples and the control log must be *bit-identical*, not close. The
networks are run long enough for their dynamics (restarts, chaotic spiking) to
amplify any rounding difference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import snn_compile.backends.reference as reference
from snn_compile import QP, read_problem
from snn_compile.backends.reference import simulate
from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import Gain, Network, Population, Projection, RunningAverage
from snn_compile.lower import lower

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]


def assert_bit_identical(a, b):
    def same(x, y, what):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), what

    assert a.steps == b.steps and a.updates == b.updates
    for field in ("final_state", "clamp_excess", "averages", "spike_counts"):
        fa, fb = getattr(a, field), getattr(b, field)
        assert fa.keys() == fb.keys()
        for name in fa:
            same(fa[name], fb[name], f"{field}[{name}]")
    assert a.events.keys() == b.events.keys()
    for name in a.events:
        for column_a, column_b in zip(a.events[name], b.events[name]):
            same(column_a, column_b, f"events[{name}]")
    for name in a.samples:
        same(a.samples[name][0], b.samples[name][0], f"sample steps[{name}]")
        same(a.samples[name][1], b.samples[name][1], f"samples[{name}]")
    assert a.gains_final == b.gains_final
    assert a.control_log == b.control_log


def both_kernels(net, steps, **options):
    numpy_run = simulate(net, steps, kernel="numpy", **options)
    numba_run = simulate(net, steps, kernel="numba", **options)
    assert numpy_run.meta["kernel"] == "numpy" and numba_run.meta["kernel"] == "numba"
    assert_bit_identical(numpy_run, numba_run)
    return numpy_run


# ---------------------------------------------------------------- problems for the families
def random_qp(seed=0, n=30, m=20) -> QP:
    """Dense random QP with active inequalities (the seed library's shape)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    P = M.T @ M / n + 0.1 * np.eye(n)
    G = rng.standard_normal((m, n))
    x_free = rng.standard_normal(n)
    return QP(P=P, q=-P @ x_free, G=G, h=G @ x_free - rng.uniform(-3.0, 1.0, m))


def sparse_qp(seed=1, horizon=12, nx=3, nu=2) -> QP:
    """A small sparse MPC-like QP: dynamics equalities, a state inequality per stage, boxes."""
    rng = np.random.default_rng(seed)
    A = np.eye(nx) + 0.2 * rng.standard_normal((nx, nx)) / np.sqrt(nx)
    B = rng.standard_normal((nx, nu))
    blocks = nx + nu
    n = horizon * blocks
    rows, cols, vals = [], [], []
    for k in range(horizon):
        for i in range(nx):
            r = k * nx + i
            rows += [r] * (1 + nu); cols += [k * blocks + i] + [k * blocks + nx + j for j in range(nu)]
            vals += [1.0] + list(-B[i])
            if k:
                rows += [r] * nx; cols += [(k - 1) * blocks + j for j in range(nx)]; vals += list(-A[i])
    Aeq = sp.csr_matrix((vals, (rows, cols)), shape=(horizon * nx, n))
    b = np.zeros(horizon * nx)
    b[:nx] = rng.uniform(-2, 2, nx)
    G = sp.csr_matrix((np.ones(horizon), (np.arange(horizon), np.arange(horizon) * blocks)),
                      shape=(horizon, n))
    bound = np.tile(np.r_[np.full(nx, 3.0), np.full(nu, 0.5)], horizon)
    return QP(P=sp.diags(np.tile(np.r_[np.ones(nx), 0.1 * np.ones(nu)], horizon)).tocsr(), q=np.zeros(n),
              G=G, h=np.full(horizon, 0.4), A=Aeq, b=b, lb=-bound, ub=bound)


PROBLEMS = {"dense": random_qp, "sparse": sparse_qp,
            "hand2": lambda: read_problem(REPO / "examples" / "hand2" / "problem.yaml")}


@pytest.mark.parametrize("family", ["primal-dual", "projection", "lif"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_numba_equals_numpy_on_every_family(family, problem):
    net = lower(PROBLEMS[problem](), family)
    trace = both_kernels(net, 1500, record_every=7)
    if family == "primal-dual" and problem != "hand2":
        assert any(e["event"] == "restart" for e in trace.control_log)   # restarts were exercised


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_equals_numpy_in_float32_too(dtype):
    for family in ("primal-dual", "projection"):
        both_kernels(lower(random_qp(2), family), 800, dtype=dtype)


# ---------------------------------------------------------------- a network using every feature
def feature_network(seed=5) -> Network:
    """Every IR feature the kernel implements, plus the corner cases where numpy's own
    rules decide the bits: signed zeros (−0.0 bias and state, clamps at ±0, a one-entry
    row of 0·(−w), an input no spike reaches), infinite excess payloads, spike-cap ties."""
    rng = np.random.default_rng(seed)

    def weights(rows, cols, density, scale=1.0):
        W = sp.random(rows, cols, density=density, random_state=rng, format="csr")
        W.data = scale * (W.data - 0.45)
        return W

    def diagonal(values):
        return sp.diags(np.asarray(values, dtype=float)).tocsr()

    bias = rng.uniform(-0.2, 0.6, 40)
    bias[:3] = -0.0
    pops = [
        Population("drive", 40, decay=rng.uniform(0.8, 0.99, 40), bias=bias, bias_gain="gs",
                   v_min=-2.0, v_max=2.0, threshold=0.3, payload="excess", reset="subtract",
                   reset_value=0.5, record=True, emit_initial_state=True,
                   v_init=rng.uniform(-0.5, 0.8, 40)),
        Population("bin", 30, decay=0.8, bias=rng.uniform(0.0, 0.3, 30), threshold=rng.uniform(0.2, 0.6, 30),
                   spike="binary", reset="to_value", reset_value=-0.2, max_spikes_per_step=3, record=True),
        Population("one", 25, bias=0.05, threshold=0.5, spike="binary", reset="subtract",
                   reset_value=1.0, max_spikes_per_step=1, role="constraint"),
        Population("acc", 35, decay=0.95, v_min=-1.0, role="constraint"),        # emits every update
        Population("hi", 20, decay=0.5, v_max=0.7, threshold=np.r_[np.full(10, 0.1), np.full(10, -np.inf)]),
        Population("slow", 15, bias=0.02, threshold=0.0, record=True),
        # Signed zeros: −0.0 + −0.0 stays −0.0; clamps at 0 and −0.0 must pick numpy's operand.
        Population("signed", 4, bias=[-0.0, 0.1, -0.0, 0.0], v_init=[-0.0, 0.2, 0.0, -0.0],
                   v_min=[0.0, -np.inf, -np.inf, -1.0], v_max=[np.inf, 0.5, -0.0, np.inf]),
        Population("mirror", 4, bias=[-0.0, -0.0, 0.3, -0.0], v_init=-0.0),
        Population("quiet", 6, bias=[-0.0, -0.0, 0.1, 0.0, -0.0, 0.2], v_init=-0.0),
        # θ = −∞ with an excess payload emits +∞; the reader's clamp makes it finite again.
        Population("ex", 3, payload="excess", bias=0.1),
        Population("sat", 3, v_min=-1.0, v_max=1.0),
    ]
    selector = sp.csr_matrix((np.full(25, 0.9), (np.arange(25), rng.permutation(40)[:25])), shape=(25, 40))
    to_quiet = weights(6, 25, 0.5)
    to_quiet = sp.csr_matrix(to_quiet.multiply(np.r_[0.0, 0.0, np.ones(4)][:, None]))
    to_quiet.eliminate_zeros()                                                # rows 0, 1: empty
    projs = [
        Projection("drive", "bin", weights(30, 40, 0.3, 2.0), delay=1, gain="g1"),
        Projection("bin", "drive", weights(40, 30, 0.2), delay=2),
        Projection("bin", "acc", weights(35, 30, 0.5), delay=0, gain="gneg"),
        Projection("acc", "drive", weights(40, 35, 0.1), delay=1, gain="gs"),
        Projection("one", "bin", weights(30, 25, 0.4), delay=3, gain="g1"),       # single spikes
        Projection("drive", "one", selector, delay=1),                            # one entry per row
        Projection("acc", "hi", weights(20, 35, 0.2), delay=1),
        Projection("slow", "drive", weights(40, 15, 0.3), delay=1),
        Projection("drive", "slow", weights(15, 40, 0.3), delay=1),
        Projection("hi", "acc", weights(35, 20, 0.0), delay=1),                   # no synapses
        Projection("signed", "mirror", diagonal([-1.0, -2.0, 0.5, 1.0]), delay=1),
        Projection("one", "quiet", to_quiet, delay=1, gain="g1"),
        Projection("ex", "sat", diagonal([0.5, 1.0, 2.0]), delay=1),
    ]
    gains = [Gain("gs", 1.0, steps=(120, 300), values=(0.8, 1.3)),
             Gain("g1", 0.7), Gain("gneg", -0.3)]
    always = ["signed", "mirror", "quiet", "ex", "sat"]
    schedule = [["drive", "bin", "one", "acc", "hi"] + always, ["slow", "bin", "acc"] + always]
    return Network(pops, projs, gains=gains, schedule=schedule,
                   controls=[RunningAverage(["drive", "acc", "slow"])])


@pytest.mark.parametrize("event_fraction", [0.0, reference.EVENT_FRACTION, 1.0])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_equals_numpy_on_a_feature_rich_network(event_fraction, dtype):
    trace = both_kernels(feature_network(), 600, record_every=3, dtype=dtype,
                         event_fraction=event_fraction)
    counts = {name: int(c.sum()) for name, c in trace.spike_counts.items()}
    assert counts["drive"] > 100 and counts["bin"] > 100 and counts["slow"] > 10
    assert 0 < counts["one"] <= 600 // 2                   # at most one per update
    assert {name: trace.updates[name] for name in ("drive", "bin", "one", "slow")} == \
        {"drive": 300, "bin": 600, "one": 300, "slow": 300}
    final = trace.final_state
    # numpy's rules for zeros, which the kernel must reproduce: maximum(−0.0, +0.0) = +0.0 and
    # minimum(+0.0, −0.0) = −0.0 (the second operand), 0 + (−1)·(+0) = +0, and a row that
    # no spike reaches keeps its −0.0 input (with event_fraction 0 a full matvec adds +0).
    assert not np.signbit(final["signed"][0]) and np.signbit(final["signed"][2])
    assert not np.signbit(final["mirror"][0])
    assert np.signbit(final["quiet"][0]) == (event_fraction > 0)
    assert np.isinf(trace.clamp_excess["sat"]).all()                      # +∞ payloads arrived


def test_numba_equals_numpy_with_a_stop_callback():
    def stop(step, ctx):
        return float(np.abs(ctx.state("acc")).sum()) > 50.0 or step > 400

    a = simulate(feature_network(), 1000, kernel="numpy", stop=stop, check_every=10)
    b = simulate(feature_network(), 1000, kernel="numba", stop=stop, check_every=10)
    assert a.stopped_early and a.steps < 1000
    assert_bit_identical(a, b)


# ---------------------------------------------------------------- several steps per call
def without_averages(net: Network) -> Network:
    return Network(net.populations, net.projections, gains=net.gains, schedule=net.schedule)


@pytest.mark.parametrize("chunk", [1, 3, 256])
def test_chunks_of_steps_equal_numpy(monkeypatch, chunk):
    """Without per-step host rules the kernel runs chunks of steps per call; chunk ends
    (stop polls, samples, the chunk limit) must not change a bit."""
    import snn_compile.backends._kernels as kernels
    monkeypatch.setattr(kernels, "MAX_CHUNK", chunk)
    calls = []
    run_chunk = kernels.NumbaStepper.run_chunk
    monkeypatch.setattr(kernels.NumbaStepper, "run_chunk",
                        lambda self, start, table: calls.append(len(table)) or run_chunk(self, start, table))

    def stop(step, ctx):
        return step >= 500

    net = without_averages(feature_network())
    a = simulate(net, 700, kernel="numpy", stop=stop, check_every=50, record_every=7)
    b = simulate(net, 700, kernel="numba", stop=stop, check_every=50, record_every=7)
    assert_bit_identical(a, b)
    assert a.steps == 550 and sum(calls) == 550 and max(calls) == min(chunk, 7)
    assert {int(c.sum()) for c in a.spike_counts.values()} - {0}            # spikes were logged


def test_restart_checks_end_chunks(monkeypatch):
    import snn_compile.backends._kernels as kernels
    calls = []
    run_chunk = kernels.NumbaStepper.run_chunk
    monkeypatch.setattr(kernels.NumbaStepper, "run_chunk",
                        lambda self, start, table: calls.append((start, len(table))) or run_chunk(self, start, table))
    net = lower(sparse_qp(), "primal-dual")
    trace = both_kernels(net, 1000, record_every=0)
    check = net.controls[0].check_every
    assert calls and all((start + length) % check == 0 or start + length == 1000 for start, length in calls)
    assert any(e["event"] == "restart" for e in trace.control_log)


def test_solve_stops_at_the_same_step_with_the_same_bits():
    import snn_compile as sc
    qp = sparse_qp(3)
    a = sc.compile(qp).solve(20_000, tol=1e-5, check_every=50, kernel="numpy")
    b = sc.compile(qp).solve(20_000, tol=1e-5, check_every=50, kernel="numba")
    assert a.status.value == "optimal" and a.steps == b.steps
    for field in ("x", "y", "z", "z_box"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()


# ---------------------------------------------------------------- choosing the kernel
def test_kernel_option_is_checked():
    net = feature_network()
    with pytest.raises(InputError, match="kernel"):
        simulate(net, 1, kernel="cuda")
    dense = Network([Population("a", 2, bias=1.0), Population("b", 2)],
                    [Projection("a", "b", np.ones((2, 2)), delay=1)])
    with pytest.raises(CapabilityError, match="dense weights"):
        simulate(dense, 1, kernel="numba")
    assert simulate(dense, 1, kernel="auto").meta["kernel"] == "numpy"


def test_auto_picks_numba_for_long_runs_only(monkeypatch):
    net = feature_network()
    assert simulate(net, 10).meta["kernel"] == "numpy"           # short: not worth loading numba
    monkeypatch.setattr(reference, "AUTO_NUMBA_SECONDS", 0.0)
    assert simulate(net, 10).meta["kernel"] == "numba"


# ---------------------------------------------------------------- emission rows written whole
def test_dense_emission_rows_equal_numpy():
    """Populations whose fired lists are long enough that the kernel rewrites the whole
    emission row (binary, state and excess payloads, with and without a binding spike cap),
    and populations that fire every update (binary and counted, or resetting)."""
    rng = np.random.default_rng(11)

    def weights(rows, cols, density=0.4):
        W = sp.random(rows, cols, density=density, random_state=rng, format="csr")
        W.data -= 0.5
        return W

    pops = [Population("bin", 24, bias=rng.uniform(0.2, 0.6, 24), threshold=0.5, spike="binary",
                       reset="subtract", reset_value=1.0, record=True),
            Population("state", 20, decay=0.9, bias=rng.uniform(-0.1, 0.4, 20), threshold=0.1,
                       v_max=3.0, record=True),
            Population("capped", 16, bias=rng.uniform(0.1, 0.5, 16), threshold=0.2, payload="excess",
                       reset="to_value", reset_value=0.0, max_spikes_per_step=5, record=True),
            Population("pulse", 6, decay=0.9, bias=0.1, spike="binary", reset="subtract",
                       reset_value=0.25, record=True),
            Population("hold", 5, bias=rng.uniform(-1.0, 1.0, 5), reset="to_value",
                       reset_value=rng.uniform(-0.5, 0.5, 5))]
    projs = [Projection("bin", "state", weights(20, 24), delay=1),
             Projection("state", "capped", weights(16, 20), delay=1),
             Projection("capped", "bin", weights(24, 16), delay=2),
             Projection("pulse", "state", weights(20, 6), delay=1),
             Projection("hold", "capped", weights(16, 5), delay=1)]
    trace = both_kernels(Network(pops, projs), 500, record_every=5, event_fraction=0.0)
    assert (trace.spike_counts["pulse"] == 500).all() and len(trace.events["pulse"][0]) == 6 * 500
    for name, size in (("bin", 24), ("state", 20), ("capped", 16)):
        steps, _, _ = trace.events[name]
        per_step = np.bincount(steps, minlength=500)
        assert per_step.max() > size // 8 and (per_step < size).any(), name   # long and partial lists
    assert np.bincount(trace.events["capped"][0]).max() == 5                 # the cap bound


# ---------------------------------------------------------------- host-side bulk helpers
def apdhg_gains():
    params = dict(L=0.45, k=0.75, s=0.95)
    from snn_compile.ir.nodes import APDHG_TERMS
    return [Gain(f"g{i}", 0.5 + i, formula="apdhg", params=dict(term=term, **params))
            for i, term in enumerate(APDHG_TERMS)] + \
        [Gain("steps", 0.7, steps=(3, 9, 40), values=(1.3, -0.2, 2.5)), Gain("const", -1.1)]


@pytest.mark.parametrize("epoch_step", [None, 1, 57])
def test_gain_table_equals_values_step_by_step(epoch_step):
    from snn_compile.runtime import GainState
    gains, bulk = GainState(apdhg_gains()), GainState(apdhg_gains())
    for state in (gains, bulk):
        state.primal_weight = 0.37
        state.set_multiplier("g2", 1.7)
        state.set_multiplier("steps", 0.3)
        state.epoch_step = epoch_step
    out = np.full((80, len(gains.names) + 1), np.nan)
    table = bulk.table(5, 50, out=out)
    assert table.base is out and table.shape == (45, len(gains.names) + 1)
    assert np.array_equal(bulk.table(5, 50), table)
    for row, step in zip(table, range(5, 50)):
        expected = np.array(gains.values(step), dtype=np.float64)
        assert row.tobytes() == expected.tobytes(), step
        if epoch_step is not None:                        # what the restart rule does after a step
            gains.epoch_step = gains.epoch_step + 1


def test_after_counting_steps_equals_after_step_per_step():
    from snn_compile.runtime import ControlRuntime, GainState
    net = lower(sparse_qp(), "primal-dual")
    check = net.controls[0].check_every

    def runtime():
        states = {p.name: np.array(p.v_init, dtype=np.float64) for p in net.populations}
        return ControlRuntime(net, states, GainState(net.gains))

    one, bulk = runtime(), runtime()
    phase = tuple(net.schedule[0])
    for s in range(check - 1):
        one.after_step(s, phase)
    bulk.after_counting_steps(0, check - 1)
    rule = net.controls[0]
    assert one.context.rule_state(rule)["t"] == bulk.context.rule_state(rule)["t"] == check
    assert one.context.gains.epoch_step == bulk.context.gains.epoch_step
    assert one.context.step == bulk.context.step == check - 2
    assert bulk.context.gains.table(check - 1, check).tobytes() == \
        np.array(one.context.gains.values(check - 1)).tobytes()
    bulk.after_counting_steps(5, 5)                       # an empty range changes nothing
    assert bulk.context.rule_state(rule)["t"] == check
    with pytest.raises(ValueError, match="restart check"):
        bulk.after_counting_steps(check - 1, check + 3)
    features = feature_network()
    averaged = ControlRuntime(features, {p.name: np.zeros(p.size) for p in features.populations},
                              GainState(features.gains))
    with pytest.raises(ValueError, match="averages"):
        averaged.after_counting_steps(0, 3)


def test_kkt_error_equals_the_scipy_operator_formula():
    """The matvecs without scipy's dispatch are the same routines, so the same bits."""
    from snn_compile.runtime import kkt_error

    def by_operators(problem, x, v):
        m_g = problem.G.shape[0]
        z, y = v[:m_g], v[m_g:]
        g = problem.P @ x + problem.q + problem.G.T @ z + problem.A.T @ y
        zeta = -g
        free_lo, free_hi = ~np.isfinite(problem.lb), ~np.isfinite(problem.ub)
        zeta[free_lo] = np.maximum(zeta[free_lo], 0.0)
        zeta[free_hi] = np.minimum(zeta[free_hi], 0.0)
        r_d = g + zeta
        r_p = np.concatenate([np.maximum(problem.G @ x - problem.h, 0.0), problem.A @ x - problem.b])
        fin_lo, fin_hi = ~free_lo, ~free_hi
        gap = (x @ (problem.P @ x) + problem.q @ x + problem.h @ z + problem.b @ y
               + problem.lb[fin_lo] @ np.minimum(zeta[fin_lo], 0.0)
               + problem.ub[fin_hi] @ np.maximum(zeta[fin_hi], 0.0))
        return float(np.sqrt(r_p @ r_p + r_d @ r_d + gap * gap))

    rng = np.random.default_rng(3)
    for qp in (sparse_qp(), random_qp()):
        problem = lower(qp, "primal-dual").controls[0].problem
        n, m = problem.q.size, problem.G.shape[0] + problem.A.shape[0]
        for scale in (1e-3, 1.0, 1e3):
            x, v = scale * rng.standard_normal(n), scale * rng.standard_normal(m)
            assert kkt_error(problem, x, v) == by_operators(problem, x, v)


def test_wide_projections_sum_rows_on_every_core_with_the_same_bits():
    """Projections from ``_kernels.PARALLEL_ROWS`` rows up run their rows in parallel (a
    whole-row pass, and the one-source-spike event path next to it)."""
    from snn_compile.backends._kernels import PARALLEL_ROWS
    rng = np.random.default_rng(11)
    n = PARALLEL_ROWS + 17
    W = sp.random(n, n, density=6 / n, random_state=rng, format="csr")
    W.data -= 0.5
    pops = [Population("x", n, decay=0.9, bias=rng.uniform(-0.1, 0.1, n), v_min=-1.0, v_max=1.0),
            Population("s", n, decay=0.95, bias=rng.uniform(0.0, 0.02, n), threshold=0.5,
                       spike="binary", reset="subtract", reset_value=0.5)]
    projs = [Projection("x", "x", W, delay=1, gain="g"), Projection("s", "x", W, delay=1),
             Projection("x", "s", W, delay=1)]
    net = Network(pops, projs, gains=[Gain("g", 0.7, steps=(20,), values=(0.3,))])
    trace = both_kernels(net, 60, record_every=0)
    assert trace.spike_counts["s"].sum() > 0


def test_a_parallel_run_leaves_the_start_method_unset_so_lava_still_imports():
    """Numba starts its threads when a kernel with a parallel loop is first loaded, which
    fixes multiprocessing's start method; Lava's import then fails ("context has already
    been set") unless the kernels undo that — after a small network's run too."""
    import subprocess
    import sys
    script = (
        "import multiprocessing, numpy as np, scipy.sparse as sp\n"
        "from snn_compile.backends._kernels import PARALLEL_ROWS\n"
        "from snn_compile.backends.reference import simulate\n"
        "from snn_compile.ir import Network, Population, Projection\n"
        "small = Network([Population('y', 3, bias=0.1)], [])\n"
        "assert simulate(small, 3, kernel='numba', record_every=0).meta['kernel'] == 'numba'\n"
        "assert multiprocessing.get_start_method(allow_none=True) is None\n"
        "n = PARALLEL_ROWS + 1\n"
        "rng = np.random.default_rng(0)\n"
        "W = sp.csr_matrix((rng.uniform(-0.5, 0.5, 4 * n), (np.repeat(np.arange(n), 4), "
        "rng.integers(0, n, 4 * n))), shape=(n, n))\n"
        "net = Network([Population('x', n, decay=0.5, bias=0.1)], [Projection('x', 'x', W, delay=1)])\n"
        "assert simulate(net, 3, kernel='numba', record_every=0).meta['kernel'] == 'numba'\n"
        "assert multiprocessing.get_start_method(allow_none=True) is None\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('lava') is not None:\n"
        "    import lava.magma.core.process.process\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
