"""``overparam report DIR``: rebuild the report of every study in a store, from the store alone."""

from __future__ import annotations

from pathlib import Path

from overparam.errors import DataError
from overparam.report import ReportPaths, Section, render_report, status_line
from overparam.studies import get_study
from overparam.sweep.store import FILENAME, ResultsStore


def build_report(directory: str | Path) -> ReportPaths:
    directory = Path(directory)
    if not (directory / FILENAME).is_file():
        raise DataError(f"{directory / FILENAME} does not exist; run a study with --out {directory} first")
    sections = []
    with ResultsStore(directory) as store:
        studies = sorted({row["study"] for row in store.runs()})
        for name in studies:
            study = get_study(name)
            rows = store.runs(name)
            stored = rows[-1]["config"].get("study_config", {})  # the latest invocation's resolved config
            config = study.resolve(file_values=stored)
            status = status_line(store, name)
            if study.summarize is None:
                sections.append(Section(name, status))
                continue
            for i, section in enumerate(study.summarize(rows, config)):
                if i == 0:
                    section.text = status + "\n\n" + section.text
                sections.append(section)
    return render_report(directory, f"overparam report: {', '.join(studies) or 'empty store'}", sections)
