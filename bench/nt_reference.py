"""Neural Tangents' structured empirical NTK on the problem of bench_ntk.py (run by it).

Runs in a separate environment with JAX and neural-tangents (not project dependencies;
neural-tangents 0.6.5 needs the JAX of its time):
    python3 -m venv /tmp/ntenv && /tmp/ntenv/bin/pip install "numpy<2" "scipy<1.14" \\
        "neural-tangents==0.6.5" && /tmp/ntenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "ml_dtypes==0.5.1"
Reads the inputs and weights from an .npz, computes the full (n, n, 10, 10) kernel with
``NtkImplementation.STRUCTURED_DERIVATIVES`` (jitted; one warm-up call, then the median of
``repeats`` calls), saves the kernel and prints the timings as one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import jax
import numpy as np
from neural_tangents import NtkImplementation, empirical_ntk_fn, stax


def main(path: str, out: str, repeats: int) -> None:
    arrays = np.load(path)
    x = jax.numpy.asarray(arrays["x"])
    layers, params = [], []
    count = sum(1 for k in arrays.files if k.startswith("w"))
    for i in range(count):
        w, b = arrays[f"w{i}"], arrays[f"b{i}"]  # torch layout: w (out, in)
        layers += [stax.Dense(w.shape[0], parameterization="standard")] + ([stax.Relu()] if i < count - 1 else [])
        params += [(jax.numpy.asarray(w.T), jax.numpy.asarray(b))] + ([()] if i < count - 1 else [])
    _, apply_fn, _ = stax.serial(*layers)
    kernel_fn = jax.jit(empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                         implementation=NtkImplementation.STRUCTURED_DERIVATIVES))
    kernel = kernel_fn(x, None, params).block_until_ready()  # warm-up (compiles)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernel = kernel_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - start)
    np.save(out, np.asarray(kernel))
    print(json.dumps({"median_s": statistics.median(times), "times": times, "jax": jax.__version__,
                      "devices": str(jax.devices())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
