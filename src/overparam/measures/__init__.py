"""Measures: plain functions on (model, loss_fn, data), each tested against an exact answer.

``data`` is an (x, y) pair or an iterable of (x, y) batches; quantities over the data are means
over all examples (batches weighted by sample count). Measures leave the model's mode, its
``.grad`` and the RNG states as they found them, and report their cost.

| module | measures |
|---|---|
| curvature | hessian_eigenvalues (Lanczos), hessian_trace (Hutchinson / Hutch++), hessian_spectrum (SLQ) |
| ntk | empirical_ntk (structured / Jacobian), analytic_ntk (infinite-width ReLU NTK and NNGP), kernel_distance |
| movement | relative_movement (global and per layer) |
| sharpness | keskar_sharpness, perturbation_sensitivity, pac_bayes_flatness, loss_along_line (Keskar's 1-D plot) |
| norms | Frobenius / spectral / nuclear norms, path norm, distance from init, effective rank, output margin |
| gradients | per_example_gradients, implicit_gradient_regularizer (R_IG), sgd_modified_loss_terms, gradient_noise_scale (+ two-batch) |
| tracking | sharpness_callback: λ_max along training with warm starts |
"""

from overparam.measures.curvature import HessianOperator, hessian_eigenvalues, hessian_spectrum, hessian_trace
from overparam.measures.gradients import (
    gradient_noise_scale,
    gradient_noise_scale_two_batch,
    implicit_gradient_regularizer,
    per_example_gradients,
    sgd_modified_loss_terms,
)
from overparam.measures.movement import relative_movement
from overparam.measures.norms import (
    all_norms,
    distance_from_init,
    effective_rank,
    effective_ranks,
    frobenius_norms,
    nuclear_norms,
    output_margin,
    path_norm,
    product_of_spectral_norms,
    spectral_norms,
    sum_of_squared_frobenius,
)
from overparam.measures.ntk import analytic_ntk, empirical_ntk, kernel_distance
from overparam.measures.sharpness import (
    keskar_sharpness,
    loss_along_line,
    pac_bayes_flatness,
    perturbation_sensitivity,
)
from overparam.measures.tracking import sharpness_callback

__all__ = [
    "HessianOperator", "all_norms", "analytic_ntk", "distance_from_init", "effective_rank", "effective_ranks",
    "empirical_ntk", "frobenius_norms", "gradient_noise_scale", "gradient_noise_scale_two_batch",
    "hessian_eigenvalues", "hessian_spectrum", "hessian_trace", "implicit_gradient_regularizer", "kernel_distance",
    "keskar_sharpness", "loss_along_line", "nuclear_norms", "output_margin", "pac_bayes_flatness", "path_norm", "per_example_gradients",
    "perturbation_sensitivity", "product_of_spectral_norms", "relative_movement", "sgd_modified_loss_terms",
    "sharpness_callback", "spectral_norms", "sum_of_squared_frobenius",
]
