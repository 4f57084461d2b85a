"""Load check for ``trainlab playground``: 8 concurrent sessions on 2 cores (a check, not a timed test).

Starts ``trainlab playground --port 0`` in a subprocess (the real command, so the memory measured
is the server's own and its worker processes'), warms it with one short round of ``--sessions``
sessions (imports and caches in place; the memory baseline is taken after it), then opens
``--sessions`` websocket clients, each on a different preset, and measures three things:

1. **play**: every client plays; the gap between consecutive ``update`` messages of a session
   (how stale its page gets) and the steps per second;
2. **step**: every client sends one-batch ``step`` requests back to back; the time from a
   request to its update;
3. **mixed**: all but one play, the last one steps; its request-to-update time under full load;

then closes every client and watches the resident memory (``VmRSS``) of the server and its
worker processes together return to the baseline taken after the warm-up round. The target:
every step update under 200 ms, and the memory back at its baseline. The machine's load average
is printed before and after, since on a shared machine other processes take their share of the
two cores.

    python benchmarks/playground_load.py                 # 8 sessions, 15 s of play, 30 steps each
    python benchmarks/playground_load.py --repeats 3     # the whole check three times
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

import numpy as np
from websockets.asyncio.client import connect

from trainlab.playground.presets import PRESETS

TARGET_MS = 200.0
MIX = ["tanh-small-vanish", "tanh-normal-saturate", "tanh-small-vs-xavier", "relu30-xavier-vs-he", "lr1-bn",
       "sigmoid-bn-gradflow", "small-init-bn", "sgd-vs-adam"]


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the playground's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue     # exited meanwhile
    return found


def _rss(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def rss_mib(pid: int) -> float:
    """Resident memory of the server and its worker processes together, MiB."""
    return _rss(pid) + sum(_rss(child) for child in children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server (all its threads), its exited workers and its live ones."""
    fields = _stat(pid)
    ticks = sum(int(f) for f in fields[11:15])          # utime, stime, cutime, cstime
    for child in children(pid):
        try:
            ticks += sum(int(f) for f in _stat(child)[11:13])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def query(preset_id: str) -> dict:
    preset = next(p for p in PRESETS if p["id"] == preset_id)
    return {k: str(v) for k, v in preset["query"].items()}


class Client:
    def __init__(self, url: str, preset_id: str) -> None:
        self.url, self.preset_id = url, preset_id
        self.ws = None
        self.gaps: list[float] = []
        self.step_ms: list[float] = []
        self.steps = 0

    async def open(self) -> None:
        self.ws = await connect(self.url, max_size=None)
        await self.recv("hello")
        await self.ws.send(json.dumps({"type": "start", "state": query(self.preset_id)}))
        await self.recv("ready")
        await self.recv("update")

    async def recv(self, kind: str) -> dict:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            if msg["type"] == "error":
                raise RuntimeError(f"{self.preset_id}: {msg['message']}")
            if msg["type"] == kind:
                return msg

    async def play(self, seconds: float) -> None:
        await self.ws.send(json.dumps({"type": "play"}))
        first = await self.recv("update")
        start_step, last = first["step"], time.perf_counter()
        end = last + seconds
        while time.perf_counter() < end:
            msg = await self.recv("update")
            now = time.perf_counter()
            self.gaps.append(1e3 * (now - last))
            last = now
            self.steps = msg["step"] - start_step
            if msg["finished"]:
                break
        await self.ws.send(json.dumps({"type": "pause"}))
        await self.recv("paused")
        await self.drain()

    async def drain(self) -> None:
        """Read what a running chunk still sends after a pause."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), 0.5)
        except TimeoutError:
            pass

    async def step_loop(self, count: int, *, until: asyncio.Event | None = None) -> None:
        for _ in range(count):
            t = time.perf_counter()
            await self.ws.send(json.dumps({"type": "step", "unit": "batch"}))
            await self.recv("update")
            self.step_ms.append(1e3 * (time.perf_counter() - t))
            if until is not None and until.is_set():
                break

    async def close(self) -> None:
        await self.ws.close()


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    a = np.asarray(values)
    return (f"n={a.size}  p50 {np.percentile(a, 50):.0f}  p95 {np.percentile(a, 95):.0f}  "
            f"p99 {np.percentile(a, 99):.0f}  max {a.max():.0f} ms")


async def check(url: str, pid: int, sessions: int, play_seconds: float, steps: int) -> dict:
    warm = [Client(url, MIX[i % len(MIX)]) for i in range(sessions)]   # one short round first: imports,
    await asyncio.gather(*(c.open() for c in warm))                     # caches and worker threads in place
    await asyncio.gather(*(c.play(1.0) for c in warm))
    await asyncio.gather(*(c.close() for c in warm))
    await asyncio.sleep(2.0)
    baseline = rss_mib(pid)
    clients = [Client(url, MIX[i % len(MIX)]) for i in range(sessions)]
    await asyncio.gather(*(c.open() for c in clients))
    opened = rss_mib(pid)

    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(c.play(play_seconds) for c in clients))
    play_cpu, play_wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
    peak_play = rss_mib(pid)
    play_gaps = [g for c in clients for g in c.gaps]
    rates = {c.preset_id: c.steps / play_seconds for c in clients}

    await asyncio.gather(*(c.step_loop(steps) for c in clients))
    step_ms = [s for c in clients for s in c.step_ms]

    probe, players = clients[-1], clients[:-1]
    probe.step_ms = []
    stop = asyncio.Event()

    async def run_players() -> None:
        for c in players:
            await c.ws.send(json.dumps({"type": "play"}))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for c in players:
            await c.ws.send(json.dumps({"type": "pause"}))

    async def drain_players() -> None:
        while not stop.is_set():
            await asyncio.gather(*(asyncio.wait_for(c.ws.recv(), 1.0) for c in players), return_exceptions=True)

    async def run_probe() -> None:
        await asyncio.sleep(1.0)
        await probe.step_loop(steps)
        stop.set()

    await asyncio.gather(run_players(), drain_players(), run_probe())
    mixed_ms = list(probe.step_ms)
    peak = max(peak_play, rss_mib(pid))
    threads_open, workers_open = threads(pid), len(children(pid))

    await asyncio.gather(*(c.close() for c in clients))
    after, waited = rss_mib(pid), 0.0
    while after > baseline + 2.0 and waited < 20.0:
        await asyncio.sleep(0.5)
        waited += 0.5
        after = rss_mib(pid)
    return {"baseline": baseline, "opened": opened, "peak": peak, "after": after, "waited": waited,
            "play_cpu": play_cpu, "play_wall": play_wall, "updates": len(play_gaps) + len(clients),
            "play_gaps": play_gaps, "step_ms": step_ms, "mixed_ms": mixed_ms, "rates": rates,
            "threads_open": threads_open, "threads_after": threads(pid), "workers_open": workers_open,
            "workers_after": len(children(pid))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--play", type=float, default=15.0, help="seconds of play (default 15)")
    parser.add_argument("--steps", type=int, default=30, help="step requests per client (default 30)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "playground", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failed = False
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            print(f"the server did not start: {line}{proc.stderr.read()}")
            return 1
        url = f"ws://127.0.0.1:{match.group(1)}/ws"
        for r in range(args.repeats):
            t = time.perf_counter()
            res = asyncio.run(check(url, proc.pid, args.sessions, args.play, args.steps))
            worst = max(max(res[key], default=0.0) for key in ("play_gaps", "step_ms", "mixed_ms"))
            back = res["after"] <= res["baseline"] + 2.0
            failed |= worst >= TARGET_MS or not back
            print(f"\nrun {r + 1}/{args.repeats} ({time.perf_counter() - t:.0f} s; "
                  f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
            print(f"  play, gap between updates:   {summary(res['play_gaps'])}")
            print(f"  step request -> update:      {summary(res['step_ms'])}")
            print(f"  step while 7 others play:    {summary(res['mixed_ms'])}")
            print("  steps/s while all play:      " + ", ".join(f"{k} {v:.0f}" for k, v in res["rates"].items()))
            share = res["play_cpu"] / res["play_wall"]
            per_update = 1e3 * res["play_cpu"] / res["updates"]
            print(f"  CPU while all play (server + workers):   {share:.2f} cores busy (of {os.cpu_count()}) "
                  f"({res['play_cpu']:.1f} s in {res['play_wall']:.1f} s); {per_update:.0f} ms of CPU per update, "
                  f"so {args.sessions} sessions need {args.sessions * per_update / 2:.0f} ms a round on 2 free cores")
            print(f"  memory (VmRSS): baseline {res['baseline']:.1f} MiB, {args.sessions} sessions open "
                  f"{res['opened']:.1f}, peak {res['peak']:.1f}, after closing {res['after']:.1f} "
                  f"(+{res['after'] - res['baseline']:.1f} MiB, waited {res['waited']:.1f} s)")
            print(f"  server threads: {res['threads_open']} with the sessions open, {res['threads_after']} after; "
                  f"worker processes: {res['workers_open']} with the sessions open, {res['workers_after']} after")
            print(f"  verdict: worst step update {worst:.0f} ms ({'<' if worst < TARGET_MS else '>='} "
                  f"{TARGET_MS:.0f}); memory {'back at' if back else 'NOT back at'} baseline")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
