"""The study registry: ``STUDIES[name]`` -> :class:`~overparam.studies.base.Study`, and suites
(``SUITES[name]``: studies run together into one store and one report, e.g. ``paper``).

Adding a study is one new module here (config dataclass, ``grid``, ``run_one``, ``summarize``,
a ``STUDY`` object) plus its name in ``_MODULES``.
"""

import importlib

from overparam.errors import choice_error
from overparam.studies.base import RunOutcome, RunSpec, Study

_MODULES = ("train_sweep", "batch_size", "width", "double_descent", "lottery", "optimizer",
            "min_norm", "deep_linear", "max_margin", "kernel_regime", "lr_eos", "label_noise", "batch_sqrt",
            "igr", "sgd_modified_loss", "batch_saturation", "rff_double_descent")


def _load() -> dict[str, Study]:
    studies = {}
    for module_name in _MODULES:
        module = importlib.import_module(f"overparam.studies.{module_name}")
        studies[module.STUDY.name] = module.STUDY
    return studies


STUDIES: dict[str, Study] = _load()

# The paper's five linked experiments (arXiv 2604.07603), run by ``overparam run paper``.
SUITES: dict[str, tuple[str, ...]] = {
    "paper": ("batch_size", "width", "double_descent", "lottery", "optimizer"),
    # The mathematical analysis's experiments: which solution gradient descent picks.
    "theory": ("min_norm", "deep_linear", "max_margin", "kernel_regime", "lr_eos", "label_noise", "batch_sqrt"),
    # The survey's dynamics: implicit gradient regularization, SGD's modified loss, critical batch
    # size, random-features double descent.
    "dynamics": ("igr", "sgd_modified_loss", "batch_saturation", "rff_double_descent"),
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise choice_error("study", name, STUDIES)
    return STUDIES[name]


__all__ = ["STUDIES", "SUITES", "RunOutcome", "RunSpec", "Study", "get_study"]
