#!/usr/bin/env python
"""``lightcol serve`` under concurrent callers: dynamic batching vs one request at a time.

    flock /tmp/lightcol-bench.lock python benchmarks/bench_serve.py [--callers 16] [--threads 2]

Starts the server (a subprocess: ``lightcol serve --model-path .bench/minilm-colbert-onnx --threads 2``)
twice, with batching and with ``--no-batching`` (each request its own ONNX Runtime calls, one request at
a time), and drives it with N callers (asyncio, keep-alive HTTP/1.1 connections written by hand so the
client costs little CPU) that each send one CISI query or one CISI abstract per request and wait for the
answer (``"encoding": "base64"``). Prints requests/s, p50/p99 latency, the server's resident memory,
an idle single query's latency, and the ceiling: in-process batched ``embed`` docs/s (same model,
same threads). Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401 - puts this checkout's lightcol first on sys.path
from common import BENCH_MODEL, cisi_texts, machine, p50_p99, print_table, require_bench_model

ROOT = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, model: Path, threads: int, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightcol", "serve", "--model-path", str(model), "--threads", str(threads),
             "--port", "0", "--log-level", "warning", *extra],
            stderr=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = re.search(r"listening on http://([\d.]+):(\d+)", line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
        else:
            raise SystemExit("the server did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: bytes, body: bytes) -> bytes:
    writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    data = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {data[:300]!r}")
    return data


async def _drive(host: str, port: int, bodies: list[bytes], callers: int) -> tuple[float, list[float]]:
    """Send ``bodies`` with ``callers`` concurrent connections (each one request at a time): wall seconds
    and per-request latencies (ms)."""
    next_item = iter(range(len(bodies)))
    latencies: list[float] = []

    async def caller() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_item:
                t = time.perf_counter()
                data = await _request(reader, writer, b"/v1/embed", bodies[i])
                latencies.append((time.perf_counter() - t) * 1000)
                assert data.startswith(b'{"model"')
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - t0, latencies


async def _drive_mixed(host: str, port: int, doc_bodies: list[bytes], query_bodies: list[bytes],
                       callers: int) -> tuple[float, list[float]]:
    """``callers`` document callers over ``doc_bodies`` and, meanwhile, one query caller (one query at a
    time, in a loop until the documents are done): document wall seconds and the queries' latencies (ms)."""
    done = asyncio.Event()
    latencies: list[float] = []

    async def query_caller() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            i = 0
            while not done.is_set():
                t = time.perf_counter()
                await _request(reader, writer, b"/v1/embed", query_bodies[i % len(query_bodies)])
                latencies.append((time.perf_counter() - t) * 1000)
                i += 1
        finally:
            writer.close()

    async def documents() -> float:
        try:
            seconds, _ = await _drive(host, port, doc_bodies, callers)
            return seconds
        finally:
            done.set()

    seconds, _ = await asyncio.gather(documents(), query_caller())
    return seconds, latencies


def _bodies(texts: list[str], kind: str) -> list[bytes]:
    return [json.dumps({"texts": [t], "kind": kind, "encoding": "base64"}).encode() for t in texts]


def drive_mixed(server: Server, docs: list[str], queries: list[str], callers: int) -> tuple[float, float, float]:
    """Documents/s under ``callers`` document callers, and p50/p99 ms of one query caller meanwhile."""
    seconds, lat = asyncio.run(_drive_mixed(server.host, server.port, _bodies(docs, "document"),
                                            _bodies(queries, "query"), callers))
    p50, p99 = p50_p99(lat)
    return len(docs) / seconds, p50, p99


def drive(server: Server, texts: list[str], kind: str, callers: int) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms."""
    bodies = _bodies(texts, kind)
    asyncio.run(_drive(server.host, server.port, bodies[: 4 * callers], callers))  # warm-up
    seconds, lat = asyncio.run(_drive(server.host, server.port, bodies, callers))
    p50, p99 = p50_p99(lat)
    return len(bodies) / seconds, p50, p99


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", type=int, default=480, help="CISI abstracts sent (one per request)")
    p.add_argument("--query-rounds", type=int, default=6, help="passes over the 112 CISI queries")
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--model", type=Path, default=BENCH_MODEL)
    args = p.parse_args()
    model_dir = require_bench_model(args.model)
    docs, queries = cisi_texts(args.docs)
    queries = queries * args.query_rounds
    extra = [] if args.max_batch_tokens is None else ["--max-batch-tokens", str(args.max_batch_tokens)]
    print(f"# lightcol serve, {args.callers} callers, {model_dir.name}, --threads {args.threads}; "
          f"{len(queries)} queries, {len(docs)} abstracts; {machine()}; {time.strftime('%Y-%m-%d %H:%M %Z')}")

    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    rss: dict[str, float] = {}
    idle: tuple[float, float, float] | None = None
    for mode, flags in (("batching", extra), ("one at a time", ["--no-batching", *extra])):
        server = Server(model_dir, args.threads, *flags)
        try:
            if mode == "batching":
                idle = drive(server, queries[:112], "query", 1)
            results[mode] = {"query": drive(server, queries, "query", args.callers),
                             "document": drive(server, docs, "document", args.callers),
                             "mixed": drive_mixed(server, docs, queries, args.callers)}
            rss[mode] = server.rss_mib()
        finally:
            server.stop()

    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=model_dir, threads=args.threads, cuda=False)
    list(model.embed(docs[:32]))
    best = min(_timed(lambda: list(model.embed(docs))) for _ in range(2))
    ceiling = len(docs) / best
    qbest = min(_timed(lambda: list(model.query_embed(queries[:112]))) for _ in range(2))

    rows = []
    for kind, unit in (("query", "queries"), ("document", "abstracts")):
        for mode in ("batching", "one at a time"):
            rps, p50, p99 = results[mode][kind]
            rows.append([f"{unit}, {args.callers} callers", mode, f"{rps:.1f}", f"{p50:.1f}", f"{p99:.1f}",
                         f"{rss[mode]:.0f}"])
    for mode in ("batching", "one at a time"):
        dps, p50, p99 = results[mode]["mixed"]
        rows.append([f"abstracts, {args.callers} callers + 1 query caller", mode, f"{dps:.1f}", "", "", ""])
        rows.append(["  the query caller's queries meanwhile", mode, "", f"{p50:.1f}", f"{p99:.1f}", ""])
    assert idle is not None
    rows.append(["queries, 1 caller (idle)", "batching", f"{idle[0]:.1f}", f"{idle[1]:.1f}", f"{idle[2]:.1f}", ""])
    rows.append(["abstracts, in-process embed (ceiling)", "batched", f"{ceiling:.1f}", "", "", ""])
    rows.append(["queries, in-process query_embed", "batched", f"{112 / qbest:.1f}", "", "", ""])
    print_table(["load", "server", "texts/s", "p50 ms", "p99 ms", "server RSS MiB"], rows)

    qb, q1 = results["batching"]["query"], results["one at a time"]["query"]
    db, d1 = results["batching"]["document"], results["one at a time"]["document"]
    mb = results["batching"]["mixed"]
    print()
    print_table(["target", "measured", "goal", "met"], [
        ["queries: batching / one at a time", f"{qb[0] / q1[0]:.2f}x", ">= 1.5x", _met(qb[0] / q1[0] >= 1.5)],
        ["abstracts: batching / one at a time", f"{db[0] / d1[0]:.2f}x", ">= 1.1x", _met(db[0] / d1[0] >= 1.1)],
        ["abstracts: batching / in-process embed", f"{db[0] / ceiling:.2f}x", ">= 0.9x", _met(db[0] / ceiling >= 0.9)],
        ["query p50 under load / idle query p50", f"{qb[1] / idle[1]:.2f}x", "<= 3x", _met(qb[1] / idle[1] <= 3)],
        ["query p50 among document callers / idle query p50", f"{mb[1] / idle[1]:.2f}x", "<= 3x",
         _met(mb[1] / idle[1] <= 3)],
    ])
    # a closed loop of N callers without think time: mean latency = N / throughput (Little's law)
    print(f"\nLittle's law: {args.callers} query callers at {qb[0]:.1f} queries/s wait {1000 * args.callers / qb[0]:.1f} "
          f"ms on average; 3x the idle p50 ({3 * idle[1]:.1f} ms) would need {args.callers / (3 * idle[1] / 1000):.0f} "
          "queries/s.")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
