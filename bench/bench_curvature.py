"""λ_max and HVP cost, side by side in one run (prints ratios; not a test).

Problem (issue #3): seeded MLP 784-512-512-10, 2048 random N(0, 1) inputs, random labels,
mean cross-entropy, float32, CPU.

1. Reference λ_max: our Lanczos at tol=1e-7 with the rigorous residual criterion.
2. Ours at tol=1e-3: HVPs, seconds, relative error.
3. PyHessian's power iteration (if importable): at its default tol=1e-3, then at tighter
   tolerances until its error is <= 1e-3 relative ("equal accuracy"); HVPs and seconds.
4. HVP cost / gradient cost (median of repeats).

PyHessian is not a dependency. To compare with it, install it beside the benchmark only:
    pip install --no-deps --target /tmp/pyhessian_pkg pyhessian==0.1
    PYTHONPATH=/tmp/pyhessian_pkg python bench/bench_curvature.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from overparam.measures.common import preserved
from overparam.measures.curvature import HessianOperator, hessian_eigenvalues
from overparam.models import MLP


def problem(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(784, 512, 2, 10)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 784, generator=gen)
    y = torch.randint(0, 10, (2048,), generator=gen)
    return model, nn.functional.cross_entropy, x, y


def timed(fn, repeats: int = 1):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def pyhessian_run(model, loss_fn, x, y, tol):
    import sys

    from pyhessian import hessian as pyhessian_hessian

    calls = {"n": 0}
    comp = pyhessian_hessian(model, loss_fn, data=(x, y), cuda=False)
    module = sys.modules["pyhessian.hessian"]
    hvp = module.hessian_vector_product

    def counting(gradsH, params, v):
        calls["n"] += 1
        return hvp(gradsH, params, v)

    module.hessian_vector_product = counting
    try:
        torch.manual_seed(0)
        start = time.perf_counter()
        values, _ = comp.eigenvalues(maxIter=1000, tol=tol, top_n=1)
        seconds = time.perf_counter() - start
    finally:
        module.hessian_vector_product = hvp
        model.train()
    return values[0], calls["n"], seconds


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    model, loss_fn, x, y = problem()
    print(f"problem: MLP 784-512-512-10 ({sum(p.numel() for p in model.parameters())} params), "
          f"2048 inputs, float32, {torch.get_num_threads()} threads")
    reference = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-7, max_hvps=200, criterion="residual")
    lam = reference.values[0].item()
    print(f"reference λ_max = {lam:.6f} (Lanczos tol 1e-7, {reference.num_hvps} HVPs, converged={reference.converged})")

    runs = [timed(lambda: hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-3, seed=s)) for s in range(3)]
    ours, our_seconds = runs[-1][0], statistics.median(t for _, t in runs)
    our_error = abs(ours.values[0].item() - lam) / lam
    print(f"ours      tol=1e-3: λ={ours.values[0].item():.6f} rel.err={our_error:.1e} HVPs={ours.num_hvps} "
          f"time={our_seconds:.2f}s (median of 3; 'gap' criterion)")
    strict, strict_seconds = timed(lambda: hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-3, criterion="residual"))
    print(f"ours      tol=1e-3: λ={strict.values[0].item():.6f} "
          f"rel.err={abs(strict.values[0].item() - lam) / lam:.1e} HVPs={strict.num_hvps} "
          f"time={strict_seconds:.2f}s ('residual' criterion, a rigorous bound)")

    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("PyHessian not importable: see the module docstring to compare with it")
    else:
        value, hvps, seconds = pyhessian_run(model, loss_fn, x, y, 1e-3)
        print(f"PyHessian tol=1e-3: λ={value:.6f} rel.err={abs(value - lam) / lam:.1e} HVPs={hvps} time={seconds:.2f}s")
        for tol in (1e-4, 1e-5, 1e-6, 1e-7):
            value, hvps, seconds = pyhessian_run(model, loss_fn, x, y, tol)
            error = abs(value - lam) / lam
            print(f"PyHessian tol={tol:g}: λ={value:.6f} rel.err={error:.1e} HVPs={hvps} time={seconds:.2f}s")
            if error <= 1e-3:
                print(f"at equal accuracy (<=1e-3): ours/PyHessian time = {our_seconds / seconds:.2f}x, "
                      f"HVPs {ours.num_hvps} vs {hvps}")
                break

    with preserved(model):
        op = HessianOperator(model, loss_fn, [(x, y)])
        op.matvec(torch.randn(op.dim))  # builds the graph once

        def gradient():
            loss = loss_fn(model(x), y)
            return torch.autograd.grad(loss, list(model.parameters()))

        v = torch.randn(op.dim)
        _, hvp_seconds = timed(lambda: op.matvec(v), repeats=7)
        _, grad_seconds = timed(gradient, repeats=7)
    print(f"HVP {hvp_seconds * 1e3:.1f} ms, gradient {grad_seconds * 1e3:.1f} ms: "
          f"HVP/gradient = {hvp_seconds / grad_seconds:.2f}x (median of 7)")


if __name__ == "__main__":
    main()
