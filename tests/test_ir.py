"""The network IR: construction is validated, save/load is exact and atomic."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.errors import InputError
from snn_compile.ir import (AdaptiveRestart, Gain, Network, Population, Projection, Readout,
                            ReadoutTerm, RunningAverage, ScaledProblem, load_network, save_network)


def two_pops(**proj_kw) -> Network:
    pops = [Population("x", 3), Population("c", 2, role="constraint")]
    return Network(pops, [Projection("x", "c", np.ones((2, 3)), **proj_kw)])


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, field", [
    (dict(decay=[1.0, 1.0]), "decay"),                      # wrong length
    (dict(bias=[0.0, np.nan, 0.0]), "bias"),                # NaN
    (dict(v_min=1.0, v_max=0.0), "v_min"),                  # v_min > v_max
    (dict(v_init=np.inf), "v_init"),                        # non-finite initial state
    (dict(spike="spiky"), "spike"),
    (dict(reset="sometimes"), "reset"),
    (dict(max_spikes_per_step=0), "max_spikes_per_step"),
])
def test_population_rejects_bad_fields(kwargs, field):
    with pytest.raises(InputError) as err:
        Population("p", 3, **kwargs)
    assert err.value.field == field


def test_projection_weight_shape_must_match_populations():
    with pytest.raises(InputError, match=r"expected shape \(2, 3\)") as err:
        Network([Population("x", 3), Population("c", 2)], [Projection("x", "c", np.ones((3, 2)))])
    assert err.value.field == "weights"


def test_projection_rejects_nan_weights_and_negative_delay():
    with pytest.raises(InputError, match="non-finite"):
        Projection("x", "c", np.array([[np.nan]]))
    with pytest.raises(InputError) as err:
        Projection("x", "c", np.ones((1, 1)), delay=-1)
    assert err.value.field == "delay"


def test_projection_to_unknown_population():
    with pytest.raises(InputError, match="unknown population 'ghost'") as err:
        Network([Population("x", 1)], [Projection("x", "ghost", np.ones((1, 1)))])
    assert err.value.field == "target"


def test_zero_delay_needs_source_earlier_in_the_same_step():
    two_pops(delay=0)                                        # default schedule: [x, c] — fine
    pops = [Population("x", 3), Population("c", 2)]
    proj = Projection("x", "c", np.ones((2, 3)), delay=0)
    with pytest.raises(InputError, match="delay 0 needs 'x'") as err:
        Network(pops, [proj], schedule=[["c", "x"]])
    assert err.value.field == "delay"
    with pytest.raises(InputError, match="delay 0"):        # source not in the target's step
        Network(pops, [proj], schedule=[["x"], ["c"]])


def test_schedule_and_references_are_checked():
    pops = [Population("x", 1), Population("c", 1)]
    with pytest.raises(InputError, match="never updated"):
        Network(pops, schedule=[["x"]])
    with pytest.raises(InputError, match="at most once"):
        Network(pops, schedule=[["x", "x", "c"]])
    with pytest.raises(InputError, match="unknown gain"):
        Network([Population("x", 1, bias_gain="alpha")])
    with pytest.raises(InputError, match="needs a RunningAverage"):
        Network(pops, readout=Readout([ReadoutTerm("x", "x", "average")], sizes={"x": 1}))
    with pytest.raises(InputError, match="unknown formula"):
        Gain("g", 1.0, formula="magic")
    with pytest.raises(InputError, match="strictly increasing"):
        Gain("g", 1.0, steps=(5, 5), values=(1.0, 2.0))


# ---------------------------------------------------------------- save / load
def rich_network() -> Network:
    rng = np.random.default_rng(7)
    W = sp.random(4, 5, density=0.4, random_state=rng, format="csr")
    W.data = rng.standard_normal(W.nnz)                     # arbitrary float64 bits
    problem = ScaledProblem(P=sp.identity(5, format="csr") * 1.5, q=rng.standard_normal(5),
                            G=W, h=rng.standard_normal(4), A=np.zeros((0, 5)), b=np.zeros(0),
                            lb=np.full(5, -np.inf), ub=rng.random(5))
    apdhg = {"term": "tau*(1-b)", "L": 2.5, "k": 1.25, "s": 0.8}
    pops = [Population("x", 5, role="primal", decay=rng.random(5), bias=rng.standard_normal(5),
                       bias_gain="alpha", v_min=-rng.random(5), v_max=np.inf, v_init=0.1),
            Population("z", 4, role="constraint", threshold=rng.standard_normal(4), spike="binary",
                       reset="to_value", reset_value=-0.3, max_spikes_per_step=2, record=True),
            Population("x_avg", 5), Population("z_avg", 4)]
    projs = [Projection("x", "z", W, delay=1, gain="beta"),
             Projection("z", "x", rng.standard_normal((5, 4)), delay=2, gain="alpha", name="back")]
    gains = [Gain("alpha", 0.25, steps=(10, 20), values=(0.125, 1 / 3)), Gain("beta", 2.0),
             Gain("tau", 0.5, formula="apdhg", params=apdhg)]
    controls = [RunningAverage(["x", "z"]),
                AdaptiveRestart(check_every=64, problem=problem, primal="x", primal_average="x_avg",
                                dual="z", dual_average="z_avg", primal_weight_init=0.3)]
    readout = Readout([ReadoutTerm("x", "x", "average"),
                       ReadoutTerm("z_box", "x", "clamp_excess", scale=-1.0, divide_by_gain="alpha"),
                       ReadoutTerm("z", "z", "spike_rate", matrix=sp.identity(4, format="csr") * 0.5)],
                      offsets={"x": rng.standard_normal(5)}, sizes={"x": 5, "z": 4, "z_box": 5})
    return Network(pops, projs, gains, schedule=[["x", "x_avg"], ["z", "z_avg"]], controls=controls,
                   readout=readout,
                   dt=0.5, provenance={"family": "primal-dual", "qp_hash": "abc",
                                       "scaling": {"d": rng.random(5), "e_ineq": rng.random(4),
                                                   "e_eq": np.zeros(0), "cost": 0.7},
                                       "params": {"eta": 0.1, "steps": [1, 2]}})


def assert_same(a, b, path="net"):
    """Recursive exact equality: arrays bit-identical (same dtype), sparse by parts."""
    if sp.issparse(a):
        assert sp.issparse(b) and a.shape == b.shape, path
        for part in ("data", "indices", "indptr"):
            x, y = getattr(a, part), getattr(b, part)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f"{path}.{part}"
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b), path
        for name in a.__dataclass_fields__:
            assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"


def test_save_load_round_trip_is_exact(tmp_path):
    net = rich_network()
    save_network(net, tmp_path / "ir")
    back = load_network(tmp_path / "ir")
    assert_same(net, back)
    assert back.gains[0].values[1] == 1 / 3                   # floats survive JSON exactly
    assert back.projections[0].weights.nnz == net.projections[0].weights.nnz


def test_save_replaces_existing_directory_atomically(tmp_path):
    target = tmp_path / "ir"
    target.mkdir()
    (target / "stale.txt").write_text("from an older run")
    save_network(rich_network(), target)
    assert sorted(p.name for p in target.iterdir()) == ["arrays.npz", "manifest.json"]
    save_network(two_pops(), target)                          # replace a valid IR by another
    assert load_network(target).neuron_count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]   # no temp or backup dirs left


def test_version_mismatch_is_an_input_error(tmp_path):
    save_network(two_pops(), tmp_path / "ir")
    manifest = tmp_path / "ir" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["version"] = 999
    manifest.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="version 999") as err:
        load_network(tmp_path / "ir")
    assert err.value.field == "version"


def test_load_rejects_a_directory_that_is_not_an_ir(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        load_network(tmp_path)
