"""``batch_sqrt``: the batch-size sweep with the learning rate scaled as sqrt(B).

The mathematical analysis's experiment: B in {32, 128, 512, 2048, 8192} with η ∝ sqrt(B)
(η = lr·sqrt(B / base_batch_size)), equal epochs. It reports about a 3 pp test-accuracy gap
between B = 32 and B = 8192 and sharper minima at larger batches.

This is the ``batch_size`` study itself (same runs, measures, line plot and summary) under its
own name, with ``lr_scaling: sqrt`` in every preset and the analysis's claims beside ours. Like
``batch_size`` (and unlike the analysis's equal epochs) every run trains to a common training
loss, and sharpness is compared at matched loss.
"""

from __future__ import annotations

import functools

from overparam.report.verdicts import DIFFERENCE_PP, Published, above
from overparam.studies import batch_size
from overparam.studies.base import Study

NAME = "batch_sqrt"

SOURCE = "the mathematical analysis (arXiv 2604.07603), batch-size experiment with η ∝ sqrt(B)"
PAPER_CLAIMS = {
    "lambda_max_ratio": Published("larger batches sharper", SOURCE, above(1.0)),
    "small_batch_accuracy_gain": Published("about +3 pp (B=32 vs B=8192)", SOURCE, above(0.0), 3.0, " pp",
                                           DIFFERENCE_PP),
    "sharpness_error_correlation": Published("positive correlation", SOURCE, above(0.0)),
}


def _sqrt(preset: dict) -> dict:
    return {**preset, "lr_scaling": "sqrt"}


_QUICK = batch_size.STUDY.presets["quick"]

STUDY = Study(
    name=NAME,
    description="the batch_size sweep with η ∝ sqrt(B): test accuracy gap and sharpness from B=32 up",
    config_type=batch_size.BatchSizeConfig,
    grid=functools.partial(batch_size.grid, name=NAME),
    run_one=batch_size.run_one,
    analyze=functools.partial(batch_size.analyze, name=NAME),
    claims=functools.partial(batch_size.claims, paper=PAPER_CLAIMS),
    render=functools.partial(batch_size.render, paper=PAPER_CLAIMS),
    presets={
        "tiny": _sqrt(batch_size.STUDY.presets["tiny"]),
        # MNIST-1D has 4000 training examples, so the sweep stops at B = 2048 (2 steps per epoch).
        "quick": _sqrt({**_QUICK, "batch_sizes": [32, 128, 512, 2048]}),
        "mnist": _sqrt({**batch_size.STUDY.presets["mnist"], "batch_sizes": [32, 128, 512, 2048, 8192]}),
        "paper": _sqrt(batch_size.STUDY.presets["paper"]),
    },
)
