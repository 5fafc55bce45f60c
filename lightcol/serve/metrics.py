"""Prometheus metrics of the service, in the text exposition format (version 0.0.4), written by hand.

Counters, gauges and histograms with labels; thread-safe (the batcher's thread records batches, the
event loop records requests). Gauges may read a live value at scrape time (``Gauge.set_function``).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

#: Request latency buckets (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Texts per ONNX Runtime call.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Padded tokens per ONNX Runtime call.
BATCH_TOKEN_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> tuple[str, ...]:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A value that goes up and down; :meth:`set_function` reads it at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._function: Callable[[], float] | None = None

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = float(value)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def value(self, *labels: str) -> float:
        if self._function is not None:
            return float(self._function())
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        if self._function is not None:
            return self.header() + [f"{self.name} {_number(float(self._function()))}"]
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    """Observations counted in cumulative buckets (``_bucket{le=...}``, ``_sum``, ``_count``)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, total = self._values.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[i] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        entry = self._values.get(self._key(labels))
        return 0 if entry is None else sum(entry[0])

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._values.items())
        lines = self.header()
        for key, (counts, total) in items:
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return lines


class ServiceMetrics:
    """Every metric ``lightcol serve`` exports at ``GET /metrics``."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.requests = Counter("lightcol_requests_total", "HTTP requests answered, by endpoint and status code.",
                                ("endpoint", "status"))
        self.latency = Histogram("lightcol_request_duration_seconds", "Time from request to response, by endpoint.",
                                 LATENCY_BUCKETS, ("endpoint",))
        self.in_flight = Gauge("lightcol_requests_in_flight", "HTTP requests being answered now.")
        self.texts = Counter("lightcol_texts_total", "Texts embedded, by kind (query or document).", ("kind",))
        self.batch_size = Histogram("lightcol_batch_size", "Texts per ONNX Runtime call, by kind.",
                                    BATCH_SIZE_BUCKETS, ("kind",))
        self.batch_requests = Histogram("lightcol_batch_requests", "Requests merged into one ONNX Runtime call.",
                                        BATCH_SIZE_BUCKETS, ("kind",))
        self.batch_tokens = Histogram("lightcol_batch_tokens", "Padded tokens (rows x longest) per ONNX Runtime call.",
                                      BATCH_TOKEN_BUCKETS, ("kind",))
        self.batch_duration = Histogram("lightcol_batch_duration_seconds", "Time of one ONNX Runtime call.",
                                        LATENCY_BUCKETS, ("kind",))
        self.queue_depth = Gauge("lightcol_queue_depth", "Texts waiting for a batch.")
        self.queue_tokens = Gauge("lightcol_queue_tokens", "Padded tokens of the texts waiting for a batch.")
        self.info = Gauge("lightcol_model_info", "The model served (value 1).", ("model", "dim", "variant"))

    def on_batch(self, kind: str, rows: int, tokens: int, requests: int, seconds: float) -> None:
        """The batcher's hook (:data:`lightcol.serve.batching.BatchHook`)."""
        self.texts.inc(kind, amount=rows)
        self.batch_size.observe(rows, kind)
        self.batch_requests.observe(requests, kind)
        self.batch_tokens.observe(tokens, kind)
        self.batch_duration.observe(seconds, kind)

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.latency, self.in_flight, self.texts, self.batch_size, self.batch_requests,
                  self.batch_tokens, self.batch_duration, self.queue_depth, self.queue_tokens, self.info):
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
