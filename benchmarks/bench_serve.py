#!/usr/bin/env python
"""``lightcol serve`` under concurrent callers: dynamic batching vs one request at a time.

    python benchmarks/bench_serve.py [--callers 16] [--threads 2]

Starts the server (a subprocess: ``lightcol serve --model-path .bench/minilm-colbert-onnx --threads 2``)
twice, with batching and with ``--no-batching`` (each request its own ONNX Runtime calls, one request at
a time), and drives it with N callers (asyncio, keep-alive HTTP/1.1 connections written by hand so the
client costs little CPU) that each send one CISI query or one CISI abstract per request and wait for the
answer (``"encoding": "base64"``); meanwhile one query caller among the document callers, and one
query caller alone (idle). The two servers take turns, round after round; each row gives the best
round's texts/s, the texts per CPU-second the server used over all rounds (what the work costs,
however busy the machine), p50/p99 latency and the server's resident memory; the ceiling is
in-process batched ``embed`` (same model, same threads). Client and server share the machine's cores.
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

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time the server process has used: its main thread (the event loop: HTTP, JSON, tokenizing)
        and all its other threads (the batcher's workers and ONNX Runtime's)."""
        main = total = 0.0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a thread that ended meanwhile
                continue
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            total += seconds
            if task.name == str(self.proc.pid):
                main = seconds
        return main, total - main

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


async def _drive_open(host: str, port: int, bodies: list[bytes], rate: float,
                      seed: int = 0) -> tuple[float, list[float]]:
    """An open loop: ``bodies`` sent at Poisson arrivals of ``rate`` per second, whether or not earlier
    answers came back (each on a free keep-alive connection, a new one if none is free). A request's
    latency counts from its scheduled arrival, so a late send is not hidden (no coordinated omission)."""
    import random

    rng = random.Random(seed)
    free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []
    latencies: list[float] = []

    async def one(body: bytes, due: float) -> None:
        conn = free.pop() if free else await asyncio.open_connection(host, port)
        if conn[1] not in opened:
            opened.append(conn[1])
        await _request(conn[0], conn[1], b"/v1/embed", body)
        latencies.append((time.perf_counter() - due) * 1000)
        free.append(conn)

    t0 = due = time.perf_counter()
    tasks = []
    for body in bodies:
        due += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.ensure_future(one(body, due)))
    await asyncio.gather(*tasks)
    for writer in opened:
        writer.close()
    return time.perf_counter() - t0, latencies


def _bodies(texts: list[str], kind: str) -> list[bytes]:
    return [json.dumps({"texts": [t], "kind": kind, "encoding": "base64"}).encode() for t in texts]


class Run:
    """One measurement: texts, wall seconds, server CPU seconds (event loop, other threads), the client's
    CPU seconds, latencies (ms)."""

    def __init__(self, texts: int, seconds: float, cpu: tuple[float, float], client: float,
                 latencies: list[float]) -> None:
        self.texts, self.seconds, self.latencies = texts, seconds, latencies
        self.cpu_loop, self.cpu_rest = cpu
        self.cpu = self.cpu_loop + self.cpu_rest
        self.client = client


def _measure(server: Server, texts: int, work) -> Run:  # noqa: ANN001 - a coroutine factory
    (loop0, rest0), client0 = server.cpu_seconds(), time.process_time()
    seconds, lat = asyncio.run(work())
    (loop1, rest1), client1 = server.cpu_seconds(), time.process_time()
    return Run(texts, seconds, (loop1 - loop0, rest1 - rest0), client1 - client0, lat)


def drive(server: Server, bodies: list[bytes], callers: int) -> Run:
    return _measure(server, len(bodies), lambda: _drive(server.host, server.port, bodies, callers))


def drive_mixed(server: Server, doc_bodies: list[bytes], query_bodies: list[bytes], callers: int) -> Run:
    """Documents under ``callers`` document callers; the latencies are one query caller's meanwhile."""
    return _measure(server, len(doc_bodies),
                    lambda: _drive_mixed(server.host, server.port, doc_bodies, query_bodies, callers))


def drive_open(server: Server, bodies: list[bytes], rate: float) -> Run:
    return _measure(server, len(bodies), lambda: _drive_open(server.host, server.port, bodies, rate))


def summary(runs: list[Run]) -> tuple[float, float, float, float]:
    """Over interleaved rounds: best texts/s (the round least slowed by other work on the machine),
    texts per server CPU-second (all rounds: what the work costs, whatever else runs), p50 and p99 ms
    of all the rounds' latencies."""
    best = max(r.texts / r.seconds for r in runs)
    per_cpu = sum(r.texts for r in runs) / max(sum(r.cpu for r in runs), 1e-9)
    p50, p99 = p50_p99([x for r in runs for x in r.latencies]) if runs[0].latencies else (float("nan"),) * 2
    return best, per_cpu, p50, p99


def cpu_split(runs: list[Run]) -> tuple[float, float, float]:
    """CPU milliseconds per text over all rounds: the server's event loop, its other threads (batcher and
    ONNX Runtime), the load-generating client."""
    n = sum(r.texts for r in runs)
    return tuple(1000 * sum(getattr(r, a) for r in runs) / n for a in ("cpu_loop", "cpu_rest", "client"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--callers", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--docs", type=int, default=160, help="CISI abstracts sent per round (one per request)")
    p.add_argument("--queries", type=int, default=224, help="CISI queries sent per round (cycling the 112)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, the two servers taking turns in each")
    p.add_argument("--open-load", type=float, default=0.5,
                   help="open-loop query arrivals per second, as a fraction of the batching server's closed-loop "
                        "query throughput measured just before (both servers get the same rate)")
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--model", type=Path, default=BENCH_MODEL)
    p.add_argument("--batching-flags", default="", metavar="FLAGS",
                   help="more 'lightcol serve' flags for the batching server only, e.g. '--threads 1 --batch-workers 2'")
    args = p.parse_args()
    model_dir = require_bench_model(args.model)
    docs, queries = cisi_texts(args.docs)
    queries = (queries * (args.queries // len(queries) + 1))[: args.queries]
    extra = [] if args.max_batch_tokens is None else ["--max-batch-tokens", str(args.max_batch_tokens)]
    print(f"# lightcol serve, {args.callers} callers, {model_dir.name}, --threads {args.threads}"
          f"{'; batching server: ' + args.batching_flags if args.batching_flags else ''}; {args.rounds} "
          f"rounds of {len(queries)} queries and {len(docs)} abstracts; {machine()}; "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)

    q_bodies, d_bodies = _bodies(queries, "query"), _bodies(docs, "document")
    modes = {"batching": [*extra, *args.batching_flags.split()], "one at a time": ["--no-batching", *extra]}
    servers = {mode: Server(model_dir, args.threads, *flags) for mode, flags in modes.items()}
    runs: dict[tuple[str, str], list[Run]] = {}
    try:
        for server in servers.values():  # warm-up
            drive(server, q_bodies[: 2 * args.callers], args.callers)
            drive(server, d_bodies[: 2 * args.callers], args.callers)
        for _ in range(args.rounds):
            for mode, server in servers.items():
                runs.setdefault((mode, "idle"), []).append(drive(server, q_bodies[:112], 1))
                runs.setdefault((mode, "query"), []).append(drive(server, q_bodies, args.callers))
                runs.setdefault((mode, "document"), []).append(drive(server, d_bodies, args.callers))
                runs.setdefault((mode, "mixed"), []).append(drive_mixed(server, d_bodies, q_bodies, args.callers))
        rate = args.open_load * summary(runs[("batching", "query")])[0]
        for mode, server in servers.items():
            runs[(mode, "open")] = [drive_open(server, q_bodies * 2, rate)]
        rss = {mode: server.rss_mib() for mode, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()

    from lightcol import LateInteractionTextEmbedding

    model = LateInteractionTextEmbedding(specific_model_path=model_dir, threads=args.threads, cuda=False)
    list(model.embed(docs[:32]))
    ceiling: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        t, c = time.perf_counter(), time.process_time()
        list(model.embed(docs))
        ceiling.append((time.perf_counter() - t, time.process_time() - c))
    ceiling_best = len(docs) / min(w for w, _ in ceiling)
    ceiling_cpu = len(docs) * len(ceiling) / sum(c for _, c in ceiling)

    S = {key: summary(value) for key, value in runs.items()}
    rows = []
    for kind, label in (("query", f"queries, {args.callers} callers"), ("document", f"abstracts, {args.callers} callers"),
                        ("mixed", f"abstracts, {args.callers} callers + 1 query caller"),
                        ("idle", "queries, 1 caller (idle server)"),
                        ("open", f"queries, open loop: Poisson arrivals at {rate:.0f}/s")):
        for mode in modes:
            best, per_cpu, p50, p99 = S[(mode, kind)]
            rows.append([label, mode, f"{best:.1f}", f"{per_cpu:.1f}", f"{p50:.1f}", f"{p99:.1f}", f"{rss[mode]:.0f}"])
    rows.append(["abstracts, in-process embed (ceiling)", "batched", f"{ceiling_best:.1f}", f"{ceiling_cpu:.1f}", "", "",
                 ""])
    print_table(["load", "server", "texts/s (best round)", "texts per server CPU-s", "p50 ms", "p99 ms",
                 "server RSS MiB"], rows)
    print("(mixed rows: texts/s of the abstracts; p50/p99 of the one query caller's queries meanwhile)")
    print()
    split_rows = []
    for kind, label in (("query", f"queries, {args.callers} callers"), ("document", f"abstracts, {args.callers} callers"),
                        ("idle", "queries, 1 caller (idle server)")):
        for mode in modes:
            loop, rest, client = cpu_split(runs[(mode, kind)])
            split_rows.append([label, mode, f"{loop:.2f}", f"{rest:.2f}", f"{client:.2f}"])
    print_table(["load", "server", "event loop CPU ms/text (HTTP, JSON, tokenizing)",
                 "batcher + ONNX Runtime threads CPU ms/text", "client CPU ms/text"], split_rows)

    qb, q1 = S[("batching", "query")], S[("one at a time", "query")]
    db, d1 = S[("batching", "document")], S[("one at a time", "document")]
    mb, idle = S[("batching", "mixed")], S[("batching", "idle")]
    m1 = S[("one at a time", "mixed")]
    print()
    print_table(["target", "wall clock", "per CPU-second", "goal", "met (wall)"], [
        ["queries: batching / one at a time", f"{qb[0] / q1[0]:.2f}x", f"{qb[1] / q1[1]:.2f}x", ">= 1.5x",
         _met(qb[0] / q1[0] >= 1.5)],
        ["abstracts: batching / one at a time", f"{db[0] / d1[0]:.2f}x", f"{db[1] / d1[1]:.2f}x", ">= 1.1x",
         _met(db[0] / d1[0] >= 1.1)],
        ["abstracts: batching / in-process embed", f"{db[0] / ceiling_best:.2f}x", f"{db[1] / ceiling_cpu:.2f}x",
         ">= 0.9x", _met(db[0] / ceiling_best >= 0.9)],
        [f"query p50, {args.callers} query callers / idle", f"{qb[2] / idle[2]:.2f}x", "", "<= 3x",
         _met(qb[2] / idle[2] <= 3)],
        [f"query p50 among {args.callers} document callers / idle", f"{mb[2] / idle[2]:.2f}x", "", "<= 3x",
         _met(mb[2] / idle[2] <= 3)],
        [f"query p50 among {args.callers} document callers: batching / one at a time", f"{mb[2] / m1[2]:.2f}x", "",
         "< 1x", _met(mb[2] < m1[2])],
    ])
    ob = S[("batching", "open")]
    print(f"\nOpen loop (not the closed-loop target above): queries arriving at {rate:.0f}/s "
          f"({args.open_load:.0%} of the batching server's closed-loop throughput) wait p50 {ob[2]:.1f} ms, "
          f"{ob[2] / idle[2]:.2f}x the idle p50.")
    # a closed loop of N callers without think time: mean latency = N / throughput (Little's law)
    print(f"\nLittle's law: {args.callers} query callers at {qb[0]:.1f} queries/s wait {1000 * args.callers / qb[0]:.1f} "
          f"ms on average; 3x the idle p50 ({3 * idle[2]:.1f} ms) would need {args.callers / (3 * idle[2] / 1000):.0f} "
          "queries/s.")


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
