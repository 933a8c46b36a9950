"""Deep linear networks f(x) = W_L ... W_1 x: the model of implicit low-rank bias.

Initialisations (``scale`` sets the size; small scales give the low-rank bias of Arora, Cohen,
Hu & Luo 2019):

- ``'gaussian'``: every entry N(0, scale^2).
- ``'orthogonal'``: each W_j = scale * Q_j with Q_j (semi-)orthogonal (Haar, from the QR of a
  Gaussian): Q^T Q = I for a tall or square Q, Q Q^T = I for a wide one.
- ``'balanced'`` (Arora, Cohen, Golowich & Hu 2018): draw A (out, in) with N(0, scale^2)
  entries, take its thin SVD A = U S V^T (r = min(out, in) singular values), and set
  W_1 = S^{1/L} V^T, W_j = S^{1/L} for 1 < j < L, W_L = U S^{1/L}, zero-padded to ``width``
  (rows of W_1, both sides of the middle ones, columns of W_L). Then W_{j+1}^T W_{j+1} =
  W_j W_j^T = S^{2/L} (padded) for every j, and W_L ... W_1 = A. Needs width >= r when L > 1.

Draws and the SVD are made in float64 on the parameters' device (where ``generator`` must
live) and then copied into the parameters, so the balanced identities hold to float64 accuracy
before the final rounding to the parameters' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from overparam.errors import ModelError
from overparam.models.common import check_choice, check_scale, check_size

INITS = ("balanced", "orthogonal", "gaussian")


class DeepLinear(nn.Module):
    """Input (n, *shape) with prod(shape) = in_features, flattened from dim 1 ->
    (n, out_features), through ``depth`` bias-free matrices.

    ``weights[j]`` (the paper's W_{j+1}) has shape (width, in_features) for j = 0,
    (width, width) in between and (out_features, width) for the last; depth = 1 is a single
    (out_features, in_features) matrix and ignores ``width``. :meth:`end_to_end` is the
    (out_features, in_features) product W_L ... W_1.
    """

    def __init__(self, in_features: int, out_features: int, width: int, depth: int, init: str = "balanced",
                 scale: float = 1e-3) -> None:
        super().__init__()
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        check_size("width", width)
        check_size("depth", depth)
        self.init = check_choice("init", init, INITS)
        self.scale = check_scale("scale", scale)
        if init == "balanced" and depth > 1 and width < min(in_features, out_features):
            raise ModelError(f"balanced init needs width >= min(in_features, out_features) = "
                             f"{min(in_features, out_features)}, got width={width}")
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(n_out, n_in))
                                        for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the matrices from ``generator`` (the global RNG when None); see the module
        docstring. 'gaussian' and 'orthogonal' draw W_1 first; 'balanced' draws only A."""
        if self.init == "balanced":
            self._balanced(generator)
            return
        for w in self.weights:
            drawn = torch.empty(w.shape, dtype=torch.float64, device=w.device)
            if self.init == "gaussian":
                drawn.normal_(0.0, self.scale, generator=generator)
            else:
                nn.init.orthogonal_(drawn, gain=self.scale, generator=generator)
            w.copy_(drawn)

    def _balanced(self, generator: torch.Generator | None) -> None:
        a = torch.randn(self.out_features, self.in_features, generator=generator, dtype=torch.float64,
                        device=self.weights[0].device) * self.scale
        if len(self.weights) == 1:
            self.weights[0].copy_(a)
            return
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        root = s ** (1.0 / len(self.weights))
        r = len(s)
        for w in self.weights:
            w.zero_()
        self.weights[0][:r].copy_(root[:, None] * vh)
        for w in self.weights[1:-1]:
            w[:r, :r].copy_(torch.diag(root))
        self.weights[-1][:, :r].copy_(u * root)

    def end_to_end(self) -> Tensor:
        """The product W_L ... W_1, shape (out_features, in_features)."""
        product = self.weights[0]
        for w in self.weights[1:]:
            product = w @ product
        return product

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for w in self.weights:
            x = F.linear(x, w)
        return x
