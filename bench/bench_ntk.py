"""Empirical NTK: 'structured' vs 'jacobian', side by side in one run (prints ratios; not a test).

Problem: seeded MLP(784, 1024, 2, 10) (784-1024-1024-10, 1.86 M parameters), 256 N(0, 1)
inputs, float32, CPU, the full (256, 256, 10, 10) kernel Θ(x, x).

Reference: Neural Tangents' structured implementation (0.24 s quoted for this machine). With
``--nt-python PATH`` (a Python with JAX and neural-tangents, see nt_reference.py) it is run in
the same benchmark on the same inputs and weights, and the two kernels are compared.

Each method: one warm-up call, then the median of ``--repeats`` timed calls. The Jacobian
method holds the per-example Jacobians of one x1 chunk and one x2 chunk, 2 · chunk · k · P
values; its chunk is ``--jacobian-chunk`` (64: ~9.5 GB in float32; the default 256 would need
~38 GB). Its warm-up uses 16 inputs (it only has to allocate and dispatch), and each timed call
takes about 100 s on 2 cores, so the default run takes ~10 minutes; ``--jacobian-repeats 1``
shortens it.

    python bench/bench_ntk.py [--repeats 5] [--jacobian-repeats 5] [--jacobian-chunk 64] [--nt-python PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import torch

from overparam.measures.ntk import empirical_ntk
from overparam.models import MLP

NT_REFERENCE_SECONDS = 0.24


def problem(seed: int = 0, n: int = 256):
    torch.manual_seed(seed)
    model = MLP(784, 1024, 2, 10)
    x = torch.randn(n, 784, generator=torch.Generator().manual_seed(seed))
    return model, x


def median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the structured method")
    parser.add_argument("--jacobian-repeats", type=int, default=5, help="timed calls of the Jacobian method")
    parser.add_argument("--jacobian-chunk", type=int, default=64, help="chunk_size of the Jacobian method")
    parser.add_argument("--nt-python", help="a Python with JAX + neural-tangents, to time Neural Tangents here")
    args = parser.parse_args()

    model, x = problem()
    params = sum(p.numel() for p in model.parameters())
    print(f"problem: MLP 784-1024-1024-10 ({params} params), {len(x)} inputs, full (256, 256, 10, 10) kernel, "
          f"float32, torch {torch.__version__}, {torch.get_num_threads()} threads")

    empirical_ntk(model, x, method="structured")  # warm-up
    structured, t_struct, ts = median_time(lambda: empirical_ntk(model, x, method="structured"), args.repeats)
    print(f"structured: median {t_struct:.3f} s over {args.repeats} runs "
          f"({', '.join(f'{t:.3f}' for t in ts)})")
    print(f"  vs Neural Tangents structured reference {NT_REFERENCE_SECONDS:.2f} s: "
          f"ours / reference = {t_struct / NT_REFERENCE_SECONDS:.2f}")
    empirical_ntk(model, x, method="structured", trace_outputs=True)
    _, t_trace, _ = median_time(lambda: empirical_ntk(model, x, method="structured", trace_outputs=True),
                                args.repeats)
    print(f"  (trace_outputs=True, (256, 256) kernel: median {t_trace:.3f} s)")

    if args.nt_python:
        neural_tangents_side_by_side(model, x, structured, t_struct, args)
    if args.jacobian_repeats < 1:
        return
    empirical_ntk(model, x[:16], method="jacobian", chunk_size=args.jacobian_chunk)  # warm-up
    jacobian, t_jac, tj = median_time(
        lambda: empirical_ntk(model, x, method="jacobian", chunk_size=args.jacobian_chunk), args.jacobian_repeats)
    print(f"jacobian (chunk_size={args.jacobian_chunk}): median {t_jac:.1f} s over {args.jacobian_repeats} runs "
          f"({', '.join(f'{t:.1f}' for t in tj)})")
    print(f"ratio jacobian / structured = {t_jac / t_struct:.0f}x")
    diff = (torch.linalg.vector_norm(structured - jacobian) / torch.linalg.vector_norm(jacobian)).item()
    print(f"agreement: ||structured - jacobian|| / ||jacobian|| = {diff:.1e} (float32)")


def neural_tangents_side_by_side(model, x, structured, t_struct, args) -> None:
    """Run nt_reference.py on the same inputs and weights; print its time and the agreement."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"x": x.numpy()}
        for i, layer in enumerate([*model.hidden, model.readout]):
            arrays[f"w{i}"] = layer.weight.detach().numpy()
            arrays[f"b{i}"] = layer.bias.detach().numpy()
        np.savez(Path(tmp) / "problem.npz", **arrays)
        script = Path(__file__).with_name("nt_reference.py")
        result = subprocess.run([args.nt_python, str(script), str(Path(tmp) / "problem.npz"),
                                 str(Path(tmp) / "kernel.npy"), str(args.repeats)],
                                capture_output=True, text=True, check=True)
        timing = json.loads(result.stdout.strip().splitlines()[-1])
        kernel = torch.from_numpy(np.load(Path(tmp) / "kernel.npy"))
    diff = (torch.linalg.vector_norm(structured - kernel) / torch.linalg.vector_norm(kernel)).item()
    print(f"Neural Tangents structured (jax {timing['jax']}): median {timing['median_s']:.3f} s over "
          f"{args.repeats} runs ({', '.join(f'{t:.3f}' for t in timing['times'])})")
    print(f"  ours / Neural Tangents = {t_struct / timing['median_s']:.2f} (measured in this run); "
          f"kernels agree to {diff:.1e} relative")


if __name__ == "__main__":
    main()
