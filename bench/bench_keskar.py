"""Keskar et al. 2017's F1 experiment, scaled to a CPU: ε-sharpness of a small-batch and a
large-batch minimum side by side with the published values (prints ratios; not a test).

Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017, "On large-batch training for deep
learning: generalization gap and sharp minima". F1 (their Table 1): a fully connected network
on MNIST, 784 inputs, 5 hidden layers of 512 units each batch-normalized with ReLU, 10 softmax
outputs; Adam; small batch (SB) 256, large batch (LB) 10% of the training set; each trained
until the training loss stops improving; their Table 3 (full space, A = I): ε-sharpness at
ε = 1e-3 of F1, SB 1.23 ± 0.83 and LB 205.14 ± 69.52 (percent, mean ± std over their runs),
maximized by L-BFGS-B in 10 iterations.

Here, with ``overparam.measures.keskar_sharpness`` (first-order corner and random-vertex
candidates, then L-BFGS-B from the best, 10 iterations, ε = 1e-3, full space):

- F1's layout: Linear → BatchNorm1d → ReLU, five times, then Linear (PyTorch default init),
  mean cross-entropy, float32, Adam (lr 1e-3, β = (0.9, 0.999)), SB 256, LB 10% of the
  training set.
- Where we differ: hidden width ``--width`` 256 by default (``--width 512`` is F1 exactly, at
  ~2.8x the cost per example); a class-stratified subset of ``--n-train`` (default 10 000) of
  the 60 000 training images, so LB = 1000 (Keskar: 6000) and LB/SB ≈ 4 (Keskar: ≈ 23); the test
  accuracy on a stratified ``--n-test`` (default 2000) of the 10 000 test images; inputs
  standardized with one global mean and std; one seed per regime (Keskar: several runs, their
  ± is the spread over them). "Until the training loss stops improving": after every epoch the
  full-training-set loss (eval mode) is measured, and training stops after ``--patience``
  (default 3) epochs in a row without a new best below (1 − 1e-2)·best, or at
  ``--max-epochs`` (default 30); the weights at the stop are measured (not the best epoch's).
  The training loss and accuracies are measured in eval mode (BatchNorm on its running
  statistics). The sharpness is measured twice: in eval mode, where f is a fixed function of
  the parameters and a perturbation that shifts a layer's pre-activations is divided by the
  running standard deviation; and with BatchNorm on the batch statistics of each chunk of 2000
  (train mode, on a copy of the model, whose running statistics it changes), which removes
  such shifts, as Keskar's public Keras code does (BatchNormalization(mode=2) normalizes with
  per-batch statistics in training and testing; its network_zoo holds their C networks). The sharpness is measured on the whole
  training subset (chunks of 2000), like Keskar's f, over all trainable parameters (BatchNorm's
  scale and shift included).

    python bench/bench_keskar.py [--width 256] [--n-train 10000] [--n-test 2000] [--patience 3]
                                 [--max-epochs 30] [--seed 0] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import time

import torch
from torch import nn

from overparam import data
from overparam.measures import keskar_sharpness

PUBLISHED = {"SB": 1.23, "LB": 205.14}  # Keskar et al. 2017, F1, ε = 1e-3, full space (percent)


def f1_network(width: int = 512, depth: int = 5) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [784] + [width] * depth
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y) in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), chunk):
        out = model(x[i:i + chunk])
        loss += float(nn.functional.cross_entropy(out, y[i:i + chunk], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + chunk]).sum())
    return loss / len(x), correct / len(x)


def train(ds, batch_size: int, seed: int, patience: int, max_epochs: int, width: int) -> dict:
    torch.manual_seed(seed)
    model = f1_network(width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    n = ds.n_train
    best, stale, epochs, steps, history = float("inf"), 0, 0, 0, []
    start = time.perf_counter()
    while epochs < max_epochs and stale < patience:
        model.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx]).backward()
            opt.step()
            steps += 1
        epochs += 1
        loss, _ = evaluate(model, ds.x_train, ds.y_train)
        history.append(loss)
        if loss < (1 - 1e-2) * best:
            best, stale = loss, 0
        else:
            stale += 1
    seconds = time.perf_counter() - start
    train_loss, train_acc = evaluate(model, ds.x_train, ds.y_train)
    _, test_acc = evaluate(model, ds.x_test, ds.y_test)
    return {"model": model, "epochs": epochs, "steps": steps, "train_seconds": seconds, "train_loss": train_loss,
            "train_acc": train_acc, "test_acc": test_acc, "stopped": "patience" if stale >= patience else "cap",
            "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    total = time.perf_counter()
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        rev += " (+ uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    start = time.perf_counter()
    ds = data.load("mnist", n_train=args.n_train, n_test=args.n_test, standardize=True, seed=args.seed, quiet=True)
    load_seconds = time.perf_counter() - start
    batches = {"SB": 256, "LB": max(1, round(0.1 * ds.n_train))}
    model_params = sum(p.numel() for p in f1_network(args.width).parameters())
    print(f"revision {rev}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"F1 layout: MLP 784-[{args.width} BN ReLU]x5-10 ({model_params} params), float32, Adam lr 1e-3; MNIST "
          f"{ds.n_train} train / {ds.n_test} test (stratified, standardized; loaded in {load_seconds:.1f} s)")
    print(f"batch sizes: SB {batches['SB']}, LB {batches['LB']} (10% of the training set); stop after "
          f"{args.patience} epochs without a 1% better full-train loss, cap {args.max_epochs} epochs")

    rows = {}
    for name, batch in batches.items():
        run = train(ds, batch, args.seed, args.patience, args.max_epochs, args.width)
        start = time.perf_counter()
        k = keskar_sharpness(run["model"], nn.functional.cross_entropy, (ds.x_train, ds.y_train), epsilon=1e-3,
                             seed=args.seed, batch_size=2000)
        run["keskar"], run["keskar_seconds"] = k, time.perf_counter() - start
        start = time.perf_counter()
        run["keskar_batch"] = keskar_sharpness(copy.deepcopy(run["model"]), nn.functional.cross_entropy,
                                               (ds.x_train, ds.y_train), epsilon=1e-3, seed=args.seed,
                                               batch_size=2000, mode="train")
        run["keskar_batch_seconds"] = time.perf_counter() - start
        rows[name] = run
        curve = ", ".join(f"{v:.3g}" for v in run["history"])
        print(f"{name} (batch {batch}): {run['epochs']} epochs, {run['steps']} steps, stopped by {run['stopped']}, "
              f"{run['train_seconds']:.1f} s; full-train loss per epoch: {curve}")

    def phi(v, k):
        return 100 * (v - k.loss) / (1 + k.loss)

    print()
    print("| | SB | LB | LB/SB |")
    print("|---|---|---|---|")
    sb, lb = rows["SB"], rows["LB"]
    print(f"| ε-sharpness φ, Keskar et al. F1 (published) | {PUBLISHED['SB']} | {PUBLISHED['LB']} | "
          f"{PUBLISHED['LB'] / PUBLISHED['SB']:.3g} |")
    for key, label in (("keskar", "BN running stats (eval)"), ("keskar_batch", "BN batch stats (Keskar)")):
        ks, kl = sb[key], lb[key]
        print(f"| φ (ε=1e-3, %), ours, {label} | {ks.value:.4g} | {kl.value:.4g} | {kl.value / ks.value:.3g} |")
        print(f"|   ours / published | {ks.value / PUBLISHED['SB']:.3g} | {kl.value / PUBLISHED['LB']:.3g} | |")
        print(f"|   f(θ) in this mode / max loss in the box | {ks.loss:.4g} / {ks.max_loss:.4g} | "
              f"{kl.loss:.4g} / {kl.max_loss:.4g} | |")
        print(f"|   φ at the first-order corner | {phi(ks.corner_value, ks):.4g} | {phi(kl.corner_value, kl):.4g} | |")
        print(f"|   φ at the best of 8 random vertices | {phi(ks.vertex_value, ks):.4g} | "
              f"{phi(kl.vertex_value, kl):.4g} | |")
        print(f"|   L-BFGS-B start / max found by | {ks.start} / {ks.found_by} | {kl.start} / {kl.found_by} | |")
        print(f"|   L-BFGS-B iterations / evaluations | {ks.iterations} / {ks.evaluations} | "
              f"{kl.iterations} / {kl.evaluations} | |")
    print(f"| train loss f(θ) (eval mode) | {sb['train_loss']:.4g} | {lb['train_loss']:.4g} | "
          f"{lb['train_loss'] / sb['train_loss']:.3g} |")
    print(f"| train accuracy | {sb['train_acc']:.4f} | {lb['train_acc']:.4f} | |")
    print(f"| test accuracy | {sb['test_acc']:.4f} | {lb['test_acc']:.4f} | |")
    print(f"| training wall time (s) | {sb['train_seconds']:.1f} | {lb['train_seconds']:.1f} | "
          f"{lb['train_seconds'] / sb['train_seconds']:.3g} |")
    for key, label in (("keskar_seconds", "eval"), ("keskar_batch_seconds", "batch stats")):
        print(f"| sharpness wall time, {label} (s) | {sb[key]:.1f} | {lb[key]:.1f} | {lb[key] / sb[key]:.3g} |")
    print(f"total wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
