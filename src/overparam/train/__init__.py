"""Training: one loop with callbacks, optimizers and schedules, checkpoints."""

from overparam.train.checkpoint import load_checkpoint, save_checkpoint
from overparam.train.ensemble import ensemble_unsupported, fit_ensemble
from overparam.train.loop import (
    Callback,
    TrainConfig,
    TrainResult,
    TrainState,
    evaluate,
    fit,
    loss_function,
)
from overparam.train.optim import LR_SCALING, OPTIMIZERS, SCHEDULES, lr_factor, scaled_lr

__all__ = [
    "Callback", "LR_SCALING", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "TrainResult", "TrainState",
    "ensemble_unsupported", "evaluate", "fit", "fit_ensemble", "load_checkpoint", "loss_function", "lr_factor", "save_checkpoint", "scaled_lr",
]
