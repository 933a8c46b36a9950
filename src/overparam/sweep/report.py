"""``overparam report DIR``: rebuild the report of every study in a store, from the store alone."""

from __future__ import annotations

from pathlib import Path

from overparam.errors import DataError
from overparam.report import ReportPaths, Section, render_report, status_line
from overparam.studies import get_study
from overparam.sweep.store import FILENAME, ResultsStore
from overparam.threads import describe


def build_report(directory: str | Path) -> ReportPaths:
    directory = Path(directory)
    if not (directory / FILENAME).is_file():
        raise DataError(f"{directory / FILENAME} does not exist; run a study with --out {directory} first")
    from overparam.studies import SUITES

    sections, setup = [], []
    with ResultsStore(directory) as store:
        present = {row["study"] for row in store.runs()}
        suite_order = [name for names in SUITES.values() for name in names]
        studies = [n for n in suite_order if n in present] + sorted(present - set(suite_order))
        for name in studies:
            study = get_study(name)
            rows = store.runs(name, curves=True)
            stored = rows[-1]["config"].get("study_config", {})  # the latest invocation's resolved config
            config = study.resolve(file_values=stored)
            setup.append(_setup_line(name, rows, stored))
            status = status_line(store, name)
            if study.analyze is None:
                sections.append(Section(name, status))
                continue
            for i, section in enumerate(study.summarize(rows, config)):
                if i == 0:
                    section.text = status + "\n\n" + section.text
                sections.append(section)
    title = "overparam report: " + (_suite_title(studies) or ", ".join(studies) or "empty store")
    preamble = "How these results were produced (per study):\n\n" + "\n".join(setup) if setup else ""
    return render_report(directory, title, sections, preamble=preamble)


def _suite_title(studies: list[str]) -> str | None:
    from overparam.studies import SUITES

    for suite, names in SUITES.items():
        if set(names) <= set(studies):
            return f"{suite} ({', '.join(studies)})"
    return None


def _setup_line(name: str, rows: list[dict], stored: dict) -> str:
    """'- study: preset, data, seeds, hardware, dates' from the stored rows alone."""
    presets = sorted({str(r["config"].get("preset")) for r in rows if r["config"].get("preset")})
    data = stored.get("data")
    data_text = ""
    if isinstance(data, dict):  # training studies; the exact-solution studies describe their data themselves
        data_text = f"data {data.get('name', '?')}" + (f" (n_train={data['n_train']})" if data.get("n_train") else "") + "; "
    done = [r for r in rows if r["status"] in ("done", "diverged")]
    devices = sorted({r["device"] for r in done if r.get("device")})
    threads = sorted({str(r["provenance"].get("torch_threads")) for r in done if r.get("provenance")} - {"None"})
    waits = sorted({describe(r["provenance"].get("omp_wait_policy"), r["provenance"].get("gomp_spincount"))
                    for r in done if r.get("provenance") and "gomp_spincount" in r["provenance"]})
    versions = sorted({f"overparam {r['package_version']}" for r in done if r.get("package_version")})
    revisions = sorted({r["git_revision"][:12] for r in done if r.get("git_revision")})
    when = ""
    if done:
        import datetime

        first, last = (datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") for t in
                       (min(r["updated_at"] for r in done), max(r["updated_at"] for r in done)))
        when = f", finished {first} to {last}"
    hardware = ", ".join(devices) or "no finished runs"
    if threads or waits:
        hardware += " (" + ", ".join(([f"{'/'.join(threads)} torch threads"] if threads else []) + waits) + ")"
    return (f"- `{name}`: preset {', '.join(presets) or 'none (defaults)'}; {data_text}"
            f"{stored.get('seeds', '?')} seed(s) per grid point; {hardware}; {', '.join(versions) or '?'}"
            f"{' at ' + ', '.join(revisions) if revisions else ''}; {len(done)} runs{when}.")
