"""Deep linear networks: f(x) = W_L ... W_1 x, the model of implicit low-rank bias.

Initializations (``scale`` sets the size; small scales give the low-rank bias of Arora et al.
2019):
- 'gaussian': every entry N(0, scale^2).
- 'orthogonal': each W_j = scale * a (semi-)orthogonal matrix (QR of a Gaussian).
- 'balanced' (Arora, Cohen & Hazan 2018): draw A (out, in) with N(0, scale^2) entries, take
  its SVD A = U S V^T (r = min(out, in) singular values), and set W_1 = S^{1/L} V^T,
  W_j = S^{1/L} for 1 < j < L, W_L = U S^{1/L}, zero-padded to ``width``. Then
  W_{j+1}^T W_{j+1} = W_j W_j^T for all j and W_L ... W_1 = A.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from overparam.errors import ModelError, check_positive_int, choice_error

INITS = ("balanced", "orthogonal", "gaussian")


class DeepLinear(nn.Module):
    """Input (n, in_features) -> (n, out_features) through ``depth`` bias-free matrices.

    ``weights[j]`` has shape (width, in) for j = 0, (width, width) in between and (out, width)
    for the last (depth=1: a single (out, in) matrix). ``end_to_end()`` is the (out, in) product.
    """

    def __init__(self, in_features: int, out_features: int, width: int, depth: int, init: str = "balanced",
                 scale: float = 1e-3) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features), ("width", width),
                            ("depth", depth)):
            check_positive_int(name, value, cls=ModelError)
        if init not in INITS:
            raise choice_error("init", init, INITS, ModelError)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ModelError(f"scale must be a number > 0, got {scale!r}")
        if init == "balanced" and depth > 1 and width < min(in_features, out_features):
            raise ModelError(f"balanced init needs width >= min(in, out) = {min(in_features, out_features)}, "
                             f"got width={width}")
        self.in_features, self.out_features, self.width, self.depth = in_features, out_features, width, depth
        self.init, self.scale = init, float(scale)
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(b, a)) for a, b in zip(sizes[:-1], sizes[1:]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.init == "gaussian":
            for w in self.weights:
                w.normal_(0.0, self.scale, generator=generator)
        elif self.init == "orthogonal":
            for w in self.weights:
                rows, cols = w.shape
                q, r = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=generator,
                                                   dtype=torch.float64))
                q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
                w.copy_(self.scale * (q if rows >= cols else q.T))
        else:
            a = torch.randn(self.out_features, self.in_features, generator=generator, dtype=torch.float64)
            u, s, vh = torch.linalg.svd(a * self.scale, full_matrices=False)
            root = torch.diag(s ** (1.0 / self.depth))
            r = len(s)
            if self.depth == 1:
                self.weights[0].copy_(u @ root @ vh)
                return
            for w in self.weights:
                w.zero_()
            self.weights[0][:r].copy_(root @ vh)
            for w in self.weights[1:-1]:
                w[:r, :r].copy_(root)
            self.weights[-1][:, :r].copy_(u @ root)

    def end_to_end(self) -> Tensor:
        product = self.weights[0]
        for w in self.weights[1:]:
            product = w @ product
        return product

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), -1)
        for w in self.weights:
            x = x @ w.T
        return x
