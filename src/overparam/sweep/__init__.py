"""Sweeps: the results store (and, in later steps, plans, executors and batched training)."""

from overparam.sweep.store import FINAL_STATUSES, STATUSES, ResultsStore

__all__ = ["FINAL_STATUSES", "STATUSES", "ResultsStore"]
