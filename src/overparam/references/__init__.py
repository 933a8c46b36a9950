"""Exact reference solutions that the theory studies compare gradient-based training against.

One module per problem, each computed by the project and unit-tested on small cases with known
answers (closed forms, optimality conditions):

- ``linear``: minimum-ℓ2-norm interpolant, ridge path, interpolant nearest a given init
- ``nuclear``: minimum-nuclear-norm matrix consistent with linear observations
- ``svm``: hard-margin SVM direction of linearly separable data
- ``kernel``: kernel (ridge-less) regression with a given kernel matrix, e.g. the initial NTK
- ``flows``: fine-step integration of gradient flow and of the modified flow L + (h/4)|∇L|²
- ``batch``: critical batch size estimates (gradient noise scale, Ma et al.'s m* = β/λ_1)
- ``rff``: minimum-norm least squares (pseudo-inverse) and the random-features bandwidth

Import from the submodule: ``from overparam.references.linear import min_norm_interpolant``.
"""
