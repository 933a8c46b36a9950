"""Exact reference solutions that the theory studies compare gradient-based training against.

One module per problem, each computed by the project and unit-tested on small cases with known
answers (closed forms, optimality conditions):

- ``linear``: minimum-ℓ2-norm interpolant, ridge path, interpolant nearest a given init
- ``nuclear``: minimum-nuclear-norm matrix consistent with linear observations
- ``svm``: hard-margin SVM direction of linearly separable data
- ``kernel``: kernel (ridge-less) regression with a given kernel matrix, e.g. the initial NTK

Import from the submodule: ``from overparam.references.linear import min_norm_interpolant``.
"""
