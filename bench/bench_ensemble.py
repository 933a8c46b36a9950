"""Batched training: a sequential ``fit`` loop vs ``fit_ensemble``, side by side in one run
(prints ratios; not a test).

Problem: M = 8 seeded MLP(40, 128, 2, 10) (40-128-128-10, 22.8 k parameters each) on MNIST-1D
(4000 training, 1000 test examples), float32, CPU, SGD (momentum 0.9, lr 0.05), batch 64,
3 epochs (189 steps), evaluated as ``fit`` does: at step 0 and once per epoch, on the full
train and test sets.

Ways, each started from the same initial weights: ``fit`` on the 8 models one after the other;
``fit_ensemble`` (backend 'auto', which is the batched-matmul MLP kernel here); and, for
reference, ``fit_ensemble(backend='vmap')``, the generic torch.func path any parameter-only
model takes. Each way: one warm-up call, then ``--repeats`` timed calls, the ways alternating
round by round so that background load hits them alike; the median is reported.

Achieved GFLOP/s counts the MLP's matmul FLOPs only: per member and training example, forward
2 Σ fan_in·fan_out and backward ≈ 2x forward (3x forward in all), plus the evaluation forwards
(2 Σ fan_in·fan_out per example evaluated); against the GFLOP/s of a large float32 matmul
(``--matmul`` square, median of ``--matmul-repeats``) measured in the same run.

Agreement: the batched and sequential final weights agree up to float32 rounding, except when a
ReLU pre-activation lands within rounding of zero in one run and not the other, after which
that member's two SGD trajectories drift apart (chaotically, typically to ~1e-2 relative); the
per-member differences are printed.

    python bench/bench_ensemble.py [--members 8] [--width 128] [--depth 2] [--batch 64] [--epochs 3]
                                   [--repeats 3] [--threads N] [--no-vmap]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch

from overparam import data
from overparam.models import MLP
from overparam.seeding import derive_seed
from overparam.train import TrainConfig, fit
from overparam.train.ensemble import fit_ensemble


def build(seeds, width, depth, in_features, classes):
    models = []
    for seed in seeds:
        torch.manual_seed(derive_seed(seed, "init"))
        models.append(MLP(in_features, width, depth, classes))
    return models


def interleaved_times(fns, repeats):
    """One warm-up call of each, then ``repeats`` rounds calling each once in turn; the list of
    times of each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return times


def matmul_gflops(size, repeats):
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-vmap", action="store_true", help="skip timing the generic vmap backend")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = data.load("mnist1d", quiet=True)
    in_features, classes = ds.input_shape[0], ds.num_classes
    seeds = list(range(args.members))
    initial = build(seeds, args.width, args.depth, in_features, classes)
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=args.batch, epochs=args.epochs)
    finals = {}

    def sequential():
        models = [copy.deepcopy(m) for m in initial]
        finals["sequential"] = (models, [fit(m, ds, config, seed=s) for m, s in zip(models, seeds)])

    def batched(backend):
        def run():
            models = [copy.deepcopy(m) for m in initial]
            finals[backend] = (models, fit_ensemble(models, ds, config, seeds, backend=backend))

        return run

    ways = {"sequential fit": sequential, "fit_ensemble": batched("auto")}
    if not args.no_vmap:
        ways["fit_ensemble vmap"] = batched("vmap")
    times = dict(zip(ways, interleaved_times(list(ways.values()), args.repeats)))
    medians = {name: statistics.median(t) for name, t in times.items()}
    peak = matmul_gflops(args.matmul, args.matmul_repeats)

    n, n_test = ds.n_train, ds.n_test
    steps = config.total_steps(n)
    per_epoch = -(-n // args.batch)
    evals = 1 + sum(1 for s in range(1, steps + 1) if s % per_epoch == 0 or s == steps)
    sizes = [in_features] + [args.width] * args.depth + [classes]
    per_example = 2 * sum(a * b for a, b in itertools.pairwise(sizes))  # forward FLOPs per example
    # examples seen: B per step, fewer in the last (partial) batch of an epoch
    examples = sum(min(args.batch, n - (s % per_epoch) * args.batch) for s in range(steps))
    flops = args.members * (3 * per_example * examples + per_example * (n + n_test) * evals)

    print(f"problem: {args.members} x MLP {'-'.join(map(str, sizes))} on MNIST-1D ({n} train, {n_test} test), "
          f"float32, sgd momentum 0.9, batch {args.batch}, {steps} steps, {evals} evaluations; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"matmul FLOPs of one way: {flops / 1e9:.2f} GFLOP (train 3x forward + evaluation forward); "
          f"large matmul {args.matmul}x{args.matmul} float32: {peak:.1f} GFLOP/s")
    t_seq = medians["sequential fit"]
    for name, median in medians.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        gflops = flops / median / 1e9
        print(f"{name:<18} median {median:.3f} s (runs {runs})  speed-up {t_seq / median:.2f}x  "
              f"{gflops:.1f} GFLOP/s = {100 * gflops / peak:.1f}% of the large matmul")
    print(f"speed-up sequential / fit_ensemble: {t_seq / medians['fit_ensemble']:.2f}x (target >= 3x)")

    m_seq, r_seq = finals["sequential"]
    for backend in [b for b in ("auto", "vmap") if b in finals]:
        m_bat, r_bat = finals[backend]
        diffs = [max(((p - q).abs().max() / q.abs().max()).item() for p, q in zip(a.parameters(), b.parameters()))
                 for a, b in zip(m_bat, m_seq)]
        acc = [abs(a.metrics["test_acc"] - b.metrics["test_acc"]) for a, b in zip(r_bat, r_seq)]
        print(f"agreement ({backend}): per-member max relative weight difference "
              f"[{', '.join(f'{d:.1e}' for d in diffs)}]; max test-acc difference {max(acc):.4f}")


if __name__ == "__main__":
    main()
