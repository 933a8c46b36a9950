"""Threading settings on a quiet and on a busy machine (prints a table; not a test).

Why: torch's CPU kernels run on libgomp (GNU OpenMP). After each parallel region its worker
threads spin-wait (by default up to ~300 000 spins) for the next one; when other processes
want the same cores, that spinning steals the time slices the other worker needs and a small
model's step can take many times longer. ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once) or a
bounded ``GOMP_SPINCOUNT`` trade that against the cost of waking a sleeping thread.

Workloads, each timed inside a fresh subprocess (libgomp reads its environment when torch is
imported, so every setting gets its own process; imports, data loading and one short warm-up
are not timed):

- small: ``overparam.train.fit`` of an MLP 40-128-128-10 on MNIST-1D (4000 examples), SGD
  (momentum 0.9, lr 0.05), batch 64, ``--small-steps`` steps (default 600) with fit's per-epoch
  evaluations: many tiny kernels, overhead bound.
- large: an MLP 784-512-512-10 on random inputs, batch 1024, SGD, ``--large-steps`` steps
  (default 30), forward + backward + update: matmul bound.

Settings: torch threads {1, 2} (``torch.set_num_threads`` in the child) x OpenMP environment
{libgomp's default, OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=1000, 10000, 100000}; each quiet
and busy. Busy: ``--load`` CPU-bound busy-loop processes (default 2, one per core here) run
while the busy cells are timed; the bench starts them itself and kills them in a ``finally``.
The bench clears OMP_WAIT_POLICY, GOMP_SPINCOUNT and OMP_NUM_THREADS from the children's
environment before setting each cell's own.

Each of ``--repeats`` rounds times every cell once (cells in turn, so slow drifts in the
machine's background load hit them alike); the table gives the median seconds and the ratio
to the quiet default (2 threads, libgomp default) of the same workload. A child that exceeds
``--timeout`` seconds is killed and counted as that many seconds (the cell is marked '>' when
any of its repetitions was). Other people's jobs on the machine count as load too: the load
average is printed before, after each round, and after.

    python bench/bench_threads.py [--repeats 3] [--load 2] [--small-steps 600] [--large-steps 30]
                                  [--threads 1 2] [--spincounts 1000 10000 100000] [--only small|large]
                                  [--conditions quiet busy] [--timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def child(workload: str, threads: int, steps: int) -> None:
    """Time one workload in this (fresh) process and print {"seconds": ...} as JSON."""
    import torch

    torch.set_num_threads(threads)
    if workload == "small":
        from overparam import data, models
        from overparam.train import TrainConfig, fit

        ds = data.load("mnist1d", quiet=True)

        def run(n: int) -> None:
            torch.manual_seed(0)
            model = models.build("mlp", ds.input_shape, ds.num_classes, width=128, depth=2)
            fit(model, ds, TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, steps=n), seed=0)
    else:
        from overparam import models

        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1024, 784, generator=generator)
        y = torch.randint(0, 10, (1024,), generator=generator)

        def run(n: int) -> None:
            torch.manual_seed(0)
            model = models.build("mlp", (784,), 10, width=512, depth=2)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for _ in range(n):
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()

    run(max(1, steps // 20))  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    run(steps)
    print(json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))


def settings(threads: list[int], spincounts: list[int]) -> list[tuple[str, int, dict[str, str]]]:
    envs = [("default", {}), ("PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"})]
    envs += [(f"SPIN={n}", {"GOMP_SPINCOUNT": str(n)}) for n in spincounts]
    return [(name, t, env) for t in threads for name, env in envs]


def time_cell(workload: str, threads: int, env: dict[str, str], steps: int, timeout: float) -> tuple[float, bool]:
    """(seconds, timed_out) of one child run."""
    child_env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARS}
    child_env.update(env)
    command = [sys.executable, os.path.abspath(__file__), "--child", workload, "--child-threads", str(threads),
               "--child-steps", str(steps)]
    try:
        done = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run kills and reaps the child
        return timeout, True
    if done.returncode != 0:
        raise RuntimeError(f"child {workload} threads={threads} env={env} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"], False


class Load:
    """``n`` CPU-bound busy-loop processes while in the ``with`` block; always killed on exit."""

    def __init__(self, n: int):
        self.n, self.processes = n, []

    def __enter__(self) -> Load:
        for _ in range(self.n):
            self.processes.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
        self.processes = []


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes for the busy cells")
    parser.add_argument("--small-steps", type=int, default=600)
    parser.add_argument("--large-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--spincounts", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--only", choices=("small", "large"), help="time one workload only")
    parser.add_argument("--conditions", nargs="+", choices=("quiet", "busy"), default=["quiet", "busy"],
                        help="time without and/or with the synthetic load")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a child is killed")
    parser.add_argument("--child", choices=("small", "large"), help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.child_threads, args.child_steps)
        return

    # a SIGTERM/SIGHUP unwinds through the finally blocks (killing the load) like Ctrl-C does
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(143))
    workloads = [w for w in ("small", "large") if args.only in (None, w)]
    steps = {"small": args.small_steps, "large": args.large_steps}
    cells = settings(args.threads, args.spincounts)
    times: dict[tuple, list[float]] = {}
    timeouts: set[tuple] = set()
    print(f"cpus {os.cpu_count()}, load average before: {load_average()}; {args.repeats} repeats, "
          f"busy = {args.load} busy-loop processes", flush=True)
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for busy in [condition == "busy" for condition in args.conditions]:
            with Load(args.load if busy else 0):
                for workload in workloads:
                    for name, threads, env in cells:
                        key = (workload, busy, threads, name)
                        seconds, timed_out = time_cell(workload, threads, env, steps[workload], args.timeout)
                        times.setdefault(key, []).append(seconds)
                        if timed_out:
                            timeouts.add(key)
        print(f"round {repeat + 1}/{args.repeats} done ({time.perf_counter() - started:.0f} s), "
              f"load average {load_average()}", flush=True)
    print(f"load average after: {load_average()}\n")
    busy_flags = [condition == "busy" for condition in args.conditions]
    reference_busy = busy_flags[0]
    print(f"median seconds (ratio to the {args.conditions[0]} default: 2 threads or the most asked, libgomp default)")
    header = f"{'workload':<8} {'threads':>7} {'OpenMP env':<12}" + "".join(
        f" {condition + ' s':>8} {'ratio':>6}" for condition in args.conditions)
    print(header)
    print("-" * len(header))
    for workload in workloads:
        reference_threads = 2 if 2 in args.threads else max(args.threads)
        reference = statistics.median(times[(workload, reference_busy, reference_threads, "default")])
        for name, threads, _ in cells:
            row = f"{workload:<8} {threads:>7} {name:<12}"
            for busy in busy_flags:
                key = (workload, busy, threads, name)
                median = statistics.median(times[key])
                mark = ">" if key in timeouts else " "
                row += f" {mark}{median:>7.2f} {median / reference:>6.2f}"
            print(row)
        print()


if __name__ == "__main__":
    main()
