"""Runs a compiled Lava process graph for the ``loihi`` / ``lava`` targets.

A *job folder* (a deployment folder written by ``LoihiBackend.emit``, or the
temporary folder ``run`` writes) holds ``graph.json`` + ``graph.npz`` (the
process graph: one process per population, its integer or float parameters
and connections) and ``ir/`` (the network, for the host side: gains, control
rules, readout). Three roles live here:

* ``execute`` — the host program, in the **worker** process: builds the Lava
  processes (``_lava_processes.py``), runs them in chunks of IR steps with
  ``Loihi2SimCfg`` (or ``Loihi2HwCfg``), and between chunks does what a chip's
  host does: reads the processes' reports, runs the shared control rules
  (``snn_compile.runtime``), writes changed states back, streams the next
  chunk's gain values, answers stop polls.
* ``supervise`` — the **parent** side: starts the worker in its own session
  with a socket, relays progress and ``stop`` callbacks, enforces the timeout,
  and afterwards kills whatever is left of the worker's process group and
  unlinks the shared-memory segments its Lava runtime created (the worker logs
  their names as it creates them), whether the run ended, failed or timed out.
* ``deployment_main`` — the command line of a deployment folder's ``run.py``.

Lava is imported only inside the worker.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import InputError, SnnCompileError

GRAPH_FORMAT = "snn-compile/lava-graph"
GRAPH_VERSION = 1
GRAPH_JSON, GRAPH_NPZ, IR_DIR, DEPLOYMENT_JSON = "graph.json", "graph.npz", "ir", "deployment.json"

#: Largest chunk of IR steps between two host interventions when nothing forces a shorter one.
MAX_CHUNK = 256
#: Bytes a report may use for per-step data (events, samples); longer chunks are cut shorter.
REPORT_BUDGET_BYTES = 16 * 2**20
#: Seconds without any message from the worker after which it counts as hung.
DEFAULT_STALL_TIMEOUT = 300.0
#: Seconds a worker that reported an error or finished gets to exit by itself.
EXIT_GRACE = 10.0
SHM_DIR = Path("/dev/shm")


class LavaRunError(SnnCompileError):
    """The Lava run failed (an exception in the worker or a Lava process, or the worker died).

    ``worker_pid``, ``segments`` (shared-memory names the run created),
    ``removed`` (those still present after it, which cleanup unlinked) and
    ``scratch`` (the worker's temporary folder, removed) describe the cleanup."""

    worker_pid: Optional[int] = None
    segments: tuple = ()
    removed: tuple = ()
    scratch: Optional[Path] = None


class LavaTimeout(LavaRunError, TimeoutError):
    """The Lava run exceeded its time limit and was killed."""


# ---------------------------------------------------------------- graph files
def save_graph(folder, graph: dict, arrays: dict) -> list[Path]:
    """``graph.json`` (structure) and ``graph.npz`` (arrays; a sparse matrix M as
    M.data, M.indices, M.indptr, M.shape)."""
    folder = Path(folder)
    flat = {}
    for key, value in arrays.items():
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            flat.update({f"{key}.data": csr.data, f"{key}.indices": csr.indices,
                         f"{key}.indptr": csr.indptr, f"{key}.shape": np.array(csr.shape)})
        else:
            flat[key] = np.asarray(value)
    (folder / GRAPH_JSON).write_text(json.dumps(graph, indent=1, allow_nan=False))
    np.savez(folder / GRAPH_NPZ, **flat)
    return [folder / GRAPH_JSON, folder / GRAPH_NPZ]


def load_graph(folder) -> tuple[dict, dict]:
    folder = Path(folder)
    path = folder / GRAPH_JSON
    if not path.is_file():
        raise InputError("not a Lava job folder (no graph.json)", source=str(folder))
    graph = json.loads(path.read_text())
    if graph.get("format") != GRAPH_FORMAT or graph.get("version") != GRAPH_VERSION:
        raise InputError(f"unsupported graph format {graph.get('format')!r} v{graph.get('version')}",
                         source=str(path), field="format")
    with np.load(folder / GRAPH_NPZ, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return graph, arrays


def _processes_module():
    try:
        from . import _lava_processes                 # inside snn_compile.backends
    except ImportError:
        import _lava_processes                        # a deployment folder (a copy next to this file)
    return _lava_processes


# ---------------------------------------------------------------- the host program (worker side)
class _HostPopulation:
    """The host's copy of one population process: what its last report said, in
    the units the shared runtime uses (real values; integers kept alongside)."""

    def __init__(self, pop, entry: dict, fixed_spec):
        self.pop, self.entry, self.fixed = pop, entry, fixed_spec
        n, depth = pop.size, entry["depth"]
        self.size, self.depth = n, depth
        if fixed_spec is not None:
            self.lsb = fixed_spec.lsb
            self.v_int = fixed_spec.v_init.copy()
            self.state = self.v_int * self.lsb
            self.u = self.v_int.copy()
            binary = pop.spike == "binary"
            bits = fixed_spec.payload_bits
            self.payload_unit = 1.0 if binary else 2.0 ** -fixed_spec.payload_exponent
            self.payload_limit = 1 if binary else (2 ** 62 if bits is None else 2 ** (bits - 1) - 1)
        else:
            self.state = np.array(pop.v_init, dtype=np.float64)
            self.u = self.state.copy()
        self.ring = None                       # set from the graph's ring_init
        self.spike_counts = np.zeros(n, dtype=np.int64)
        self.updates, self.last_update = 0, -1
        self.stats = None
        self.ring_dirty = False

    def clamp_excess(self) -> np.ndarray:
        pop = self.pop
        if self.updates == 0:
            return np.zeros(self.size)
        if self.fixed is not None:
            u = self.u
            return (u - np.minimum(np.maximum(u, self.fixed.v_min), self.fixed.v_max)) * self.lsb
        if not (np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max))):
            return np.zeros(self.size)
        return self.u - np.minimum(np.maximum(self.u, pop.v_min), pop.v_max)

    def set_integer_state(self, v_int: np.ndarray):
        self.v_int = v_int
        np.multiply(v_int, self.lsb, out=self.state)        # the reference's float mirror


class _HostEmissions:
    """``EmissionAccess`` over the host copies of the emission rings (real units)."""

    def __init__(self, pops: dict, clock: Callable[[], int]):
        self._pops, self._clock = pops, clock

    def _slot(self, population: str, lag: int):
        host = self._pops[population]
        if not 0 <= lag < host.depth:
            raise ValueError(f"population {population!r} keeps emissions of the last "
                             f"{host.depth} step(s) only (lag {lag} requested)")
        return host, (self._clock() - lag) % host.depth

    def emission(self, population: str, lag: int) -> np.ndarray:
        host, slot = self._slot(population, lag)
        row = host.ring[slot]
        return row * host.payload_unit if host.fixed is not None else row.copy()

    def set_emission(self, population: str, values, lag: int) -> None:
        from snn_compile.ir.fixed_point import round_nearest
        host, slot = self._slot(population, lag)
        if host.fixed is not None:
            units = round_nearest(np.asarray(values, dtype=np.float64) / host.payload_unit)
            host.ring[slot] = np.clip(units, -host.payload_limit, host.payload_limit)
        else:
            host.ring[slot] = values
        host.ring_dirty = True

    def last_update(self, population: str) -> int:
        return self._pops[population].last_update

    def depth(self, population: str) -> int:
        return self._pops[population].depth


def _chunk_limit(graph: dict, settings: dict, steps: int) -> int:
    """Longest chunk whose report fits REPORT_BUDGET_BYTES (events and samples are per step)."""
    per_step = 0
    for pop in graph["populations"]:
        n = pop["size"]
        per_step += 2 * n * pop["record"]
        if pop["name"] in settings["sampled"] and settings["record_every"] > 0:
            per_step += n / settings["record_every"]
    limit = int(REPORT_BUDGET_BYTES / 8 / per_step) if per_step else MAX_CHUNK
    return max(1, min(settings.get("max_chunk") or MAX_CHUNK, limit, max(steps, 1)))


def execute(folder, steps: int, settings: dict, channel=None, watch=None):
    """Run the job in ``folder`` for ``steps`` IR steps; returns a ``Trace``.

    ``settings``: ``record_every`` (int), ``sample_populations`` (names or None),
    ``max_events``, ``poll_every`` (steps between stop polls through ``channel``;
    None: no polls), ``hardware`` (True: ``Loihi2HwCfg``), ``max_chunk``,
    ``fail_at_step`` (fault injection: a process raises at that step),
    ``backend_name``. ``watch`` (a ``_Watchdog``) is told the runtime once it exists.
    """
    from snn_compile.ir import AdaptiveRestart, load_network
    from snn_compile.ir.fixed_point import quantize_gain, round_nearest, saturate
    from snn_compile.runtime import ControlRuntime, GainState
    from snn_compile.trace import EventLog, Trace

    folder = Path(folder)
    net = load_network(folder / IR_DIR)
    graph, arrays = load_graph(folder)
    procs_module = _processes_module()
    fixed = graph["arithmetic"] == "fixed"
    spec = net.fixed_point if fixed else None
    substeps = graph["substeps"]
    entries = graph["populations"]
    names = [entry["name"] for entry in entries]
    sampled = names if settings.get("sample_populations") is None else list(settings["sample_populations"])
    unknown = [name for name in sampled if name not in names]
    if unknown:
        raise InputError(f"unknown population(s) {unknown}", field="sample_populations")
    record_every = int(settings.get("record_every") or 0)
    run = {"record_every": record_every, "sampled": sampled, "fail_at_step": settings.get("fail_at_step")}
    run["max_chunk"] = max_chunk = _chunk_limit(graph, dict(settings, **run), steps)
    poll_every = settings.get("poll_every")
    backend_name = settings.get("backend_name", "loihi" if fixed else "lava")

    hosts = {}
    for i, (entry, pop) in enumerate(zip(entries, net.populations)):
        host = _HostPopulation(pop, entry, spec.populations[i] if fixed else None)
        host.ring = np.array(arrays[f"p{i}.ring_init"], dtype=np.int64 if fixed else np.float64) \
            .reshape(entry["depth"], entry["size"])
        if fixed:
            host.stats = np.zeros(len(procs_module.STATS_FIELDS), dtype=np.int64)
        hosts[pop.name] = host
    gains = GainState(net.gains)
    clock = [0]
    controls = ControlRuntime(net, {name: h.state for name, h in hosts.items()}, gains,
                              _HostEmissions(hosts, lambda: clock[0]))
    periods = [rule.check_every for rule in net.controls if isinstance(rule, AdaptiveRestart)]
    if poll_every:
        periods.append(int(poll_every))
    events = {name: EventLog(settings.get("max_events", 2_000_000)) for name, h in hosts.items() if h.pop.record}
    n_samples = steps // record_every if record_every > 0 else 0
    sample_steps = np.zeros(n_samples, dtype=np.int64)
    sample_states = {name: np.zeros((n_samples, hosts[name].size)) for name in sampled} if n_samples else {}

    procs, models = procs_module.build_processes(graph, arrays, run)
    by_name = dict(zip(names, procs))
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    select_tag = "fixed_pt" if fixed else "floating_pt"
    if settings.get("hardware"):
        run_cfg = Loihi2HwCfg(select_tag=select_tag, exception_proc_model_map=models)
    else:
        run_cfg = Loihi2SimCfg(select_tag=select_tag, exception_proc_model_map=models)
    layouts = {name: procs_module.command_layout(entry, run, len(net.gains) + 1, fixed)
               for name, entry in zip(names, entries)}
    reports = {name: procs_module.report_layout(entry, run, fixed) for name, entry in zip(names, entries)}
    pending = {name: {} for name in names}          # writes for the next command

    gain_bits = spec.gain_mantissa_bits if fixed else None
    used_gains: list = list(gains.values(0))
    taken, stopped, chunks = 0, False, 0
    lava_seconds = 0.0
    started = time.perf_counter()
    build_started = started
    procs[0].create_runtime(run_cfg=run_cfg)
    if watch is not None:
        watch.attach(procs[0].runtime)
    startup = time.perf_counter() - build_started

    def snapshot() -> "Trace":
        meta = {"family": net.family, "neurons": net.neuron_count,
                "synapses": spec.synapse_count if fixed else net.synapse_count,
                "lava": {"substeps": substeps, "lava_steps": taken * substeps, "processes": len(procs),
                         "chunks": chunks, "max_chunk": max_chunk,
                         "run_config": type(run_cfg).__name__, "select_tag": select_tag,
                         "startup_s": startup, "lava_run_s": lava_seconds}}
        if fixed:
            meta["fixed_point"] = {
                "hardware": spec.hardware,
                "integer_state": {n: h.v_int.copy() for n, h in hosts.items()},
                "scale_exponent": {n: h.fixed.scale_exponent for n, h in hosts.items()},
                "overflow": {n: _stats_dict(h, procs_module.STATS_FIELDS) for n, h in hosts.items()}}
        return Trace(
            steps=taken, final_state={n: h.state.copy() for n, h in hosts.items()},
            clamp_excess={n: h.clamp_excess() for n, h in hosts.items()},
            averages={n: a.mean.copy() for n, a in controls.averages.items()},
            spike_counts={n: h.spike_counts.copy() for n, h in hosts.items()},
            updates={n: h.updates for n, h in hosts.items()},
            gains_final={name: float(used_gains[i]) for i, name in enumerate(gains.names)},
            control_log=controls.context.log, backend=backend_name, dtype="int64" if fixed else "float64",
            meta=meta)

    controls.context.snapshot = snapshot
    failed = True
    try:
        while taken < steps:
            start = taken
            end = min([steps, start + max_chunk] + [(start // p + 1) * p for p in periods])
            length = end - start
            # Gains of every step of the chunk. Between two host interventions the only
            # host state that moves is the epoch counter, which the rules advance without
            # reading any state at a step that is not a check step (docs/ir.md §4).
            table = []
            for s in range(start, end):
                table.append(list(gains.values(s)))
                if s < end - 1 and controls.active:
                    controls.after_step(s, ())
            for name, proc in by_name.items():
                message = _command(layouts[name], start, length, table, pending[name], fixed, gain_bits,
                                   max_chunk, quantize_gain)
                proc.from_host.external_pipe_csp_send_port.send(message)
                pending[name] = {}
            lava_started = time.perf_counter()
            procs[0].run(condition=RunSteps(num_steps=length * substeps), run_cfg=run_cfg)
            lava_seconds += time.perf_counter() - lava_started
            chunks += 1
            for name, proc in by_name.items():
                _read_report(hosts[name], reports[name], proc.to_host.external_pipe_csp_recv_port.recv(),
                             controls.averages.get(name), events.get(name), start, end - 1,
                             sample_states.get(name), sample_steps, record_every)
            taken = end
            used_gains = table[-1]
            if controls.active:
                clock[0] = end - 1
                logged = len(controls.context.log)
                averages_before = {n: (a.mean.copy(), a.count) for n, a in controls.averages.items()}
                controls.after_step(end - 1, ())
                if len(controls.context.log) != logged:   # a rule wrote states (as reference_fixed)
                    for name, host in hosts.items():
                        if fixed:
                            host.set_integer_state(saturate(round_nearest(host.state / host.lsb),
                                                            host.fixed.state_bits))
                        pending[name]["v"] = host.v_int if fixed else host.state
                        if record_every > 0 and end % record_every == 0 and name in sample_states:
                            sample_states[name][end // record_every - 1] = host.state
                for name, host in hosts.items():
                    if host.ring_dirty:
                        pending[name]["ring"] = host.ring
                        host.ring_dirty = False
                for name, avg in controls.averages.items():
                    mean, count = averages_before[name]
                    if avg.count != count or not np.array_equal(avg.mean, mean):
                        pending[name]["avg"] = (avg.mean.copy(), avg.count)
            if channel is not None:
                channel.send(("progress", taken))
                if poll_every and taken % int(poll_every) == 0:
                    channel.send(("poll", taken - 1, snapshot()))
                    if channel.recv():
                        stopped = True
                        controls.context.step = taken - 1
                        controls.context.record("stop", reason="stop callback")
                        break
        failed = False
    finally:
        if watch is not None:
            watch.detach()             # the processes end now, on purpose
        # after a failure the runtime may never answer: the supervisor kills what is left
        _stop_runtime(procs[0], limit=3.0 if failed else 60.0)
    wall = time.perf_counter() - started - startup
    from snn_compile.backends.reference import finish_trace
    return finish_trace(snapshot(), events, sample_steps, sample_states, taken, record_every, wall, stopped)


def _stats_dict(host: _HostPopulation, fields) -> dict:
    stats = dict(zip(fields, (int(x) for x in host.stats)))
    return {"max_abs_state": stats["max_state"], "state_limit": host.fixed.state_limit,
            "max_abs_input": stats["max_input"], "state_saturations": stats["state_saturations"],
            "input_saturations": stats["input_saturations"], "masked_by_clamp": stats["masked_by_clamp"],
            "unmasked_saturations": stats["unmasked"]}


def _command(layout, start: int, length: int, table: list, writes: dict, fixed: bool, gain_bits,
             max_chunk: int, quantize_gain) -> np.ndarray:
    message = np.zeros(layout.size)
    layout.put(message, "chunk_len", length)
    layout.put(message, "start", start)
    if "v" in writes:
        layout.put(message, "write_v", 1)
        layout.put(message, "v", writes["v"])
    if "ring" in writes:
        layout.put(message, "write_ring", 1)
        layout.put(message, "ring", writes["ring"])
    if "avg" in writes and "avg_mean" in layout:
        layout.put(message, "write_avg", 1)
        layout.put(message, "avg_mean", writes["avg"][0])
        layout.put(message, "avg_count", writes["avg"][1])
    n_gains = len(table[0])
    if fixed:                    # docs/ir.md §5.1 gain format, computed on the host from float g(t)
        pairs = np.zeros((max_chunk, n_gains, 2))
        cache: dict = {}
        for row, values in enumerate(table):
            for col, g in enumerate(values):
                if g not in cache:
                    cache[g] = quantize_gain(g, gain_bits)
                pairs[row, col] = cache[g]
        layout.put(message, "gain_m", pairs[:, :, 0])
        layout.put(message, "gain_e", pairs[:, :, 1])
    else:
        gains = np.ones((max_chunk, n_gains))
        gains[:length] = table
        layout.put(message, "gain", gains)
    return message


def _read_report(host: _HostPopulation, layout, message: np.ndarray, average, events, start: int,
                 last: int, samples, sample_steps, record_every: int):
    reported = int(layout.get(message, "last_step")[0])
    if reported != last:
        raise RuntimeError(f"population '{host.pop.name}' reported step {reported}, expected {last}")
    fixed = host.fixed is not None
    if fixed:
        host.set_integer_state(np.rint(layout.get(message, "v")).astype(np.int64))
        host.u = np.rint(layout.get(message, "u")).astype(np.int64)
        host.ring = np.rint(layout.get(message, "ring")).astype(np.int64).reshape(host.depth, host.size)
        host.stats = np.rint(layout.get(message, "stats")).astype(np.int64)
    else:
        host.state[...] = layout.get(message, "v")
        host.u = layout.get(message, "u").copy()
        host.ring = layout.get(message, "ring").reshape(host.depth, host.size).copy()
    host.spike_counts = np.rint(layout.get(message, "counts")).astype(np.int64)
    host.updates = int(layout.get(message, "updates")[0])
    host.last_update = int(layout.get(message, "last_update")[0])
    if average is not None:
        average.mean[...] = layout.get(message, "avg_mean")
        average.count = int(layout.get(message, "avg_count")[0])
    if events is not None and "fired" in layout:
        rows = last - start + 1
        fired = layout.get(message, "fired").reshape(-1, host.size)[:rows]   # (recorded: size ≥ 1)
        payload = layout.get(message, "payload").reshape(-1, host.size)[:rows]
        for row in np.flatnonzero(fired.any(axis=1)):
            neurons = np.flatnonzero(fired[row])
            events.append(start + row, neurons, payload[row, neurons])
    if samples is not None:
        count = int(layout.get(message, "n_samples")[0])
        all_steps = layout.get(message, "sample_steps")
        steps = np.rint(all_steps[:count]).astype(np.int64)
        states = layout.get(message, "samples").reshape(all_steps.size, host.size)[:count]
        for step, state in zip(steps, states):
            row = (step + 1) // record_every - 1
            if row < len(samples):
                samples[row] = state
                sample_steps[row] = step


def _stop_runtime(proc, limit: float = 30.0):
    """Stop the Lava runtime; a runtime wedged by a failed process may never answer,
    so give up after ``limit`` seconds (the supervisor then kills the process group)."""
    done = threading.Event()

    def stop():
        try:
            proc.stop()
        except Exception:            # noqa: BLE001 - a failed runtime may also fail to stop
            pass
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    done.wait(limit)


# ---------------------------------------------------------------- worker entry point
def _log_shared_memory(path: str):
    """Record the name of every shared-memory segment created from now on in this
    process and its forks (Lava's SharedMemoryManager server is a fork), so the
    supervisor can unlink whatever a killed run leaves in /dev/shm."""
    from multiprocessing import shared_memory

    original = shared_memory.SharedMemory.__init__

    def logged_init(self, name=None, create=False, size=0):
        original(self, name, create, size)
        if create:
            with open(path, "a", encoding="ascii") as log:
                log.write(self.name + "\n")

    shared_memory.SharedMemory.__init__ = logged_init


class _Channel:
    """The worker's end of the socket; sends are serialised (the watchdog may send too)."""

    def __init__(self, fd: int):
        self._connection = Connection(fd)
        self._lock = threading.Lock()

    def send(self, message):
        with self._lock:
            self._connection.send(message)

    def recv(self):
        return self._connection.recv()


class _Watchdog(threading.Thread):
    """Ends the worker's whole process group as soon as the run cannot finish.

    * A Lava process died (its model raised): Lava's runtime would wait for it
      forever, so report the exception to the parent and kill the group (the
      parent then unlinks the shared memory).
    * The parent died (it would never clean up): unlink the logged shared-memory
      segments and kill the group.
    """

    def __init__(self, channel: _Channel, shm_log: str, parent: int, leftovers: list):
        super().__init__(daemon=True)
        self.channel, self.shm_log, self.parent, self.leftovers = channel, shm_log, parent, leftovers
        self.actors: list = []
        self.lock = threading.Lock()

    def attach(self, runtime):
        infrastructure = getattr(runtime, "_messaging_infrastructure", None)
        with self.lock:
            self.actors = list(getattr(infrastructure, "actors", []))

    def detach(self):
        with self.lock:
            self.actors = []

    def run(self):
        while True:
            time.sleep(0.2)
            if os.getppid() != self.parent:
                _remove_segments(Path(self.shm_log).read_text().split())
                for path in self.leftovers:                   # the parent's temporary folders
                    shutil.rmtree(path, ignore_errors=True)
                os.killpg(0, signal.SIGKILL)
            with self.lock:
                dead = [actor for actor in self.actors if not actor.is_alive()]
            if dead:
                failure = getattr(dead[0], "exception", None)
                text = (f"{type(failure[0]).__name__}: {failure[0]}" if failure
                        else f"exit code {dead[0].exitcode}")
                try:
                    self.channel.send(("error", "LavaProcessError",
                                       f"a Lava process ended during the run ({text})",
                                       failure[1] if failure else ""))
                finally:
                    os.killpg(0, signal.SIGKILL)


def _worker(folder: str, fd: int, shm_log: str, parent: int, temporary_job: bool) -> int:
    _log_shared_memory(shm_log)
    channel = _Channel(fd)
    leftovers = [Path(shm_log).parent] + ([Path(folder)] if temporary_job else [])
    watch = _Watchdog(channel, shm_log, parent, leftovers)
    watch.start()
    try:
        request = channel.recv()
        trace = execute(folder, request["steps"], request["settings"], channel, watch)
        channel.send(("done", trace))
    except BaseException as exc:     # noqa: BLE001 - everything goes back to the parent
        try:
            channel.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
        except OSError:
            pass
        if os.getppid() != parent:   # the parent died (the socket broke): nobody else cleans up
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
        return 1
    return 0


# ---------------------------------------------------------------- supervisor (parent side)
def _worker_command() -> list[str]:
    if __package__:
        return [sys.executable, "-m", f"{__package__}._lava_runner"]
    return [sys.executable, str(Path(__file__).resolve())]


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _kill_group(pgid: int, wait: float = 10.0) -> None:
    """SIGKILL every process of the worker's group until none is left."""
    deadline = time.monotonic() + wait
    while _group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _remove_segments(names) -> list[str]:
    removed = []
    for name in names:
        path = SHM_DIR / name
        try:
            path.unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def supervise(folder, steps: int, settings: dict, *, net=None, stop=None, progress=None,
              timeout: Optional[float] = None, stall_timeout: Optional[float] = DEFAULT_STALL_TIMEOUT,
              temporary_job: bool = False):
    """Run ``execute(folder, steps, settings)`` in a worker process and return its Trace.

    ``stop(step, ctx)`` is called every ``settings["poll_every"]`` steps with a
    ``ControlContext`` built from the worker's snapshot (reads only: writes stay in
    the parent). ``progress(steps_done)`` is called after every chunk. ``timeout``
    limits the whole run, ``stall_timeout`` the time between two messages (a hung
    runtime). Raises ``LavaTimeout`` / ``LavaRunError``; in every case the worker's
    processes and shared-memory segments are gone when this returns. If this
    process dies instead, the worker removes them itself (and ``folder`` too when
    ``temporary_job``).
    """
    scratch = _scratch_folder()
    shm_log = scratch / "shared_memory.log"
    shm_log.touch()
    stderr_path = scratch / "worker.err"
    parent_end, child_end = socket.socketpair()
    channel = Connection(parent_end.detach())
    error: Optional[LavaRunError] = None
    worker = None
    try:
        with open(stderr_path, "wb") as stderr:
            worker = subprocess.Popen(
                _worker_command() + ["worker", str(Path(folder).resolve()), str(child_end.fileno()),
                                     str(shm_log), str(os.getpid()), "1" if temporary_job else "0"],
                pass_fds=(child_end.fileno(),), start_new_session=True, cwd=scratch,
                env=dict(os.environ, TMPDIR=str(scratch)),      # multiprocessing's pymp-* folders
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        child_end.close()
        channel.send({"steps": int(steps), "settings": settings})
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            waits = [w for w in (stall_timeout, None if deadline is None else deadline - time.monotonic())
                     if w is not None]
            wait = max(0.0, min(waits)) if waits else None
            if not channel.poll(wait):
                limit = "the time limit" if deadline is not None and time.monotonic() >= deadline \
                    else f"{stall_timeout:g} s without progress"
                error = LavaTimeout(f"Lava run exceeded {limit}; worker killed")
                break
            try:
                message = channel.recv()
            except (EOFError, OSError):
                error = LavaRunError(f"Lava worker died (exit code {worker.poll()}): "
                                     f"{_tail(stderr_path)}")
                break
            kind = message[0]
            if kind == "progress" and progress is not None:
                progress(message[1])
            elif kind == "poll":
                channel.send(bool(stop(message[1], _stop_context(net, message[1], message[2])))
                             if stop is not None else False)
            elif kind == "done":
                trace = message[1]
                break
            elif kind == "error":
                error = LavaRunError(f"Lava run failed: {message[1]}: {message[2]} "
                                     f"(worker output: {_tail(stderr_path)})")
                error.details = message[3]
                break
    except BaseException:
        if worker is not None:
            _kill_group(worker.pid)
        raise
    finally:
        channel.close()
        child_end.close()
        segments, removed = (), ()
        if worker is not None:
            if error is None or not isinstance(error, LavaTimeout):
                try:
                    worker.wait(EXIT_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(worker.pid)
            worker.wait()
            segments = tuple(shm_log.read_text().split())
            removed = tuple(_remove_segments(segments))
        shutil.rmtree(scratch, ignore_errors=True)
    if error is not None:
        error.worker_pid, error.segments, error.removed = worker.pid, segments, removed
        error.scratch = scratch
        raise error
    trace.meta.setdefault("lava", {})["worker"] = {"pid": worker.pid, "shared_memory_segments": len(segments),
                                                   "segments_left_and_removed": len(removed)}
    return trace


def _scratch_folder() -> Path:
    """A fresh folder for the worker's log, output and TMPDIR. multiprocessing puts a Unix
    socket there (AF_UNIX paths are limited to 107 bytes), so a long TMPDIR is not used."""
    base = tempfile.gettempdir()
    if len(base) > 60 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="snn-lava-", dir=base))


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return " | ".join(text[-lines:]) or "no output"


def _stop_context(net, step: int, trace):
    """A ControlContext with the worker's snapshot, for a stop callback in the parent."""
    from snn_compile.runtime import AverageState, ControlContext, GainState
    gains = GainState(net.gains if net is not None else [])
    averages = {name: AverageState(np.array(mean)) for name, mean in trace.averages.items()}
    ctx = ControlContext(net, {k: np.array(v) for k, v in trace.final_state.items()}, gains, averages)
    ctx.step, ctx.log = step, list(trace.control_log)
    ctx.snapshot = lambda: trace
    return ctx


# ---------------------------------------------------------------- a deployment folder's command line
def deployment_main(folder, argv=None) -> int:
    """``python run.py [--steps N] [--hw] [--timeout S] [--out DIR]`` in a deployment folder."""
    import argparse

    folder = Path(folder)
    info = json.loads((folder / DEPLOYMENT_JSON).read_text())
    parser = argparse.ArgumentParser(prog="run.py", description=(
        f"Run the {info['target']} deployment in this folder: rebuild the Lava process graph from "
        f"{GRAPH_JSON}/{GRAPH_NPZ} and the host program from {IR_DIR}/, run it, write the trace and "
        f"the solution vectors."))
    parser.add_argument("--steps", type=int, default=info["steps"],
                        help=f"network steps (default {info['steps']}, what the compiling run used)")
    parser.add_argument("--hw", action="store_true",
                        help="run with Loihi2HwCfg on a Loihi 2 system (needs Intel's lava-loihi)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the run is killed")
    parser.add_argument("--out", default=str(folder / "result"), help="output folder (default ./result)")
    args = parser.parse_args(argv)
    if args.hw:
        import importlib.util
        if importlib.util.find_spec("lava.utils.loihi2_profiler") is None:
            print("run.py: --hw needs Intel's lava-loihi extension (Loihi2HwCfg compiles for and "
                  "talks to a Loihi 2 system); it is not installed here. Run without --hw to use "
                  "Loihi2SimCfg on the CPU.", file=sys.stderr)
            return 3
    from snn_compile.decode import readout, unscale
    from snn_compile.ir import load_network

    settings = {"record_every": 0, "sample_populations": None, "hardware": args.hw,
                "backend_name": info["target"]}
    trace = supervise(folder, args.steps, settings, timeout=args.timeout)
    net = load_network(folder / IR_DIR)
    values = unscale(net, readout(net, trace))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trace.save(out / "trace")
    np.savez(out / "solution.npz", **values)
    summary = {"steps": trace.steps, "target": info["target"], "run_config": trace.meta["lava"]["run_config"],
               "lava_steps": trace.meta["lava"]["lava_steps"], "wall_time_s": trace.wall_time,
               **{k: np.asarray(v).tolist() for k, v in values.items()}}
    (out / "solution.json").write_text(json.dumps(summary, indent=1))
    print(f"{info['target']}: {trace.steps} steps ({summary['lava_steps']} Lava time steps) in "
          f"{trace.wall_time:.2f} s; x, y, z, z_box written to {out / 'solution.npz'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "worker":
        code = _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1")
        sys.stdout.flush()
        sys.stderr.flush()
        # No interpreter shutdown: after a failure, multiprocessing's exit handler would wait for
        # Lava processes that may never end (the supervisor kills the group instead).
        os._exit(code)
    print("usage: _lava_runner.py worker FOLDER FD SHM_LOG PARENT_PID TEMPORARY (started by supervise)",
          file=sys.stderr)
    sys.exit(2)
