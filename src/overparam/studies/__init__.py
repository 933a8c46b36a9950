"""The study registry: ``STUDIES[name]`` -> :class:`~overparam.studies.base.Study`.

Adding a study is one new module here (config dataclass, ``grid``, ``run_one``, a ``STUDY``
object) plus its entry below.
"""

from overparam.errors import choice_error
from overparam.studies import train_sweep
from overparam.studies.base import RunOutcome, RunSpec, Study

STUDIES: dict[str, Study] = {study.name: study for study in (train_sweep.STUDY,)}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise choice_error("study", name, STUDIES)
    return STUDIES[name]


__all__ = ["STUDIES", "RunOutcome", "RunSpec", "Study", "get_study"]
