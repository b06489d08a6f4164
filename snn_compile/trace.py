"""What every backend returns from a run: final quantities for the readout,
spike statistics, compact spike events, a down-sampled state trajectory and the
control log. Saved as a directory: ``trace.json`` (scalars, names, log) plus
``arrays.npz`` (every array, bit-exact).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FORMAT = "snn-compile/trace"
FORMAT_VERSION = 1

#: Default cap on stored spike events per population; counts continue beyond it.
DEFAULT_MAX_EVENTS = 2_000_000

#: A run with no explicit ``record_every`` stores at most this many state samples.
DEFAULT_MAX_SAMPLES = 1000

_CHUNK = 1 << 16


class EventLog:
    """Append-only (step, neuron, payload) columns in fixed-size numpy chunks.

    Memory grows with the number of events, never with steps × neurons; after
    ``max_events`` further events are dropped and ``truncated`` is set.
    """

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS):
        self.max_events = int(max_events)
        self.count = 0
        self.truncated = False
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._fill = _CHUNK                                 # fill level of the last chunk

    def append(self, step: int, neurons: np.ndarray, payloads) -> None:
        n = len(neurons)
        room = self.max_events - self.count
        if n > room:
            self.truncated = True
            n = room
            if n <= 0:
                return
        if np.ndim(payloads) == 0:      # one payload for all (e.g. binary spikes)
            payloads = np.full(len(neurons), payloads, dtype=np.float64)
        done = 0
        while done < n:
            if self._fill == _CHUNK:
                self._chunks.append((np.empty(_CHUNK, np.int64), np.empty(_CHUNK, np.int32),
                                     np.empty(_CHUNK, np.float64)))
                self._fill = 0
            steps, ids, values = self._chunks[-1]
            k = min(n - done, _CHUNK - self._fill)
            sl = slice(self._fill, self._fill + k)
            steps[sl] = step
            ids[sl] = neurons[done:done + k]
            values[sl] = payloads[done:done + k]
            self._fill += k
            done += k
        self.count += n

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._chunks:
            return np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.float64)
        used = [tuple(a[:_CHUNK if i < len(self._chunks) - 1 else self._fill] for a in chunk)
                for i, chunk in enumerate(self._chunks)]
        return tuple(np.concatenate(col) for col in zip(*used))  # type: ignore[return-value]


def default_record_every(steps: int, max_samples: int = DEFAULT_MAX_SAMPLES) -> int:
    return max(1, math.ceil(steps / max_samples))


@dataclass(eq=False)
class Trace:
    """The result of ``Backend.run``. Dicts are keyed by population name.

    ``final_state``, ``clamp_excess`` (of each population's last update),
    ``averages`` (RunningAverage means) and ``gains_final`` (g(T−1) incl.
    run-time multipliers, the value in effect during the last step) are what
    the readout (docs/ir.md §3) needs. ``events[pop] = (steps, neurons,
    payloads)`` holds the spikes of ``record`` populations (``events_truncated``
    when some population hit ``max_events``; its ``spike_counts`` still count
    every spike); ``samples[pop] =
    (step_indices, states)`` the state after every ``record_every``-th step.
    """

    steps: int
    final_state: dict[str, np.ndarray]
    clamp_excess: dict[str, np.ndarray]
    averages: dict[str, np.ndarray]
    spike_counts: dict[str, np.ndarray]
    updates: dict[str, int]
    gains_final: dict[str, float]
    events: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    events_truncated: bool = False
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    record_every: int = 0
    control_log: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0
    backend: str = ""
    dtype: str = "float64"
    stopped_early: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ queries
    def total_spikes(self, populations=None) -> int:
        names = self.spike_counts if populations is None else populations
        return int(sum(int(self.spike_counts[name].sum()) for name in names))

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.wall_time if self.wall_time > 0 else math.inf

    def raster(self, population: str, *, dense: bool = False):
        """Spike times of a recorded population: ``(steps, neurons)``, or with
        ``dense=True`` a (steps × neurons) int8 matrix (small runs only)."""
        if population not in self.events:
            recorded = ", ".join(sorted(self.events)) or "none"
            raise InputError(f"population {population!r} was not recorded (recorded: {recorded})",
                             field="population")
        steps, neurons, _ = self.events[population]
        if not dense:
            return steps, neurons
        size = self.final_state[population].size
        grid = np.zeros((self.steps, size), dtype=np.int8)
        grid[steps, neurons] = 1
        return grid

    # ------------------------------------------------------------ files
    def save(self, directory) -> Path:
        """Write ``trace.json`` + ``arrays.npz`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}

        def put(group: str, name: str, value) -> str:
            key = f"{group}.{len(arrays)}"
            arrays[key] = np.asarray(value)
            return key

        keys: dict[str, Any] = {}
        for group in ("final_state", "clamp_excess", "averages", "spike_counts"):
            keys[group] = {name: put(group, name, arr) for name, arr in getattr(self, group).items()}
        keys["events"] = {name: [put("events", name, a) for a in cols] for name, cols in self.events.items()}
        keys["samples"] = {name: [put("samples", name, a) for a in cols] for name, cols in self.samples.items()}
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "steps": self.steps,
               "updates": self.updates, "gains_final": self.gains_final,
               "events_truncated": self.events_truncated, "record_every": self.record_every,
               "control_log": self.control_log, "wall_time": self.wall_time, "backend": self.backend,
               "dtype": self.dtype, "stopped_early": self.stopped_early, "meta": self.meta,
               "arrays": keys}
        (directory / "trace.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
        np.savez(directory / "arrays.npz", **arrays)
        return directory

    @classmethod
    def load(cls, directory) -> "Trace":
        directory = Path(directory)
        path = directory / "trace.json"
        if not path.is_file():
            raise InputError("not a trace directory (no trace.json)", source=str(directory))
        doc = _from_json(json.loads(path.read_text()))
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise InputError(f"unsupported trace format {doc.get('format')!r} v{doc.get('version')}",
                             source=str(path), field="format")
        with np.load(directory / "arrays.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        keys = doc["arrays"]
        groups = {g: {name: arrays[k] for name, k in keys[g].items()}
                  for g in ("final_state", "clamp_excess", "averages", "spike_counts")}
        return cls(steps=doc["steps"], updates=doc["updates"], gains_final=doc["gains_final"],
                   events={n: tuple(arrays[k] for k in ks) for n, ks in keys["events"].items()},
                   samples={n: tuple(arrays[k] for k in ks) for n, ks in keys["samples"].items()},
                   events_truncated=doc["events_truncated"], record_every=doc["record_every"],
                   control_log=doc["control_log"], wall_time=doc["wall_time"], backend=doc["backend"],
                   dtype=doc["dtype"], stopped_early=doc["stopped_early"], meta=doc["meta"], **groups)


def jsonable(value, nonfinite=lambda v: {"$float": repr(v)}):
    """Plain JSON types. Non-finite floats become ``nonfinite(value)``: by default
    {"$float": "inf"}, so the file stays strict JSON and loads back exactly."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, nonfinite) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), nonfinite)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return nonfinite(value)
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value
