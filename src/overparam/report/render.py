"""Render a report from already-computed content (claims, text, figures) into a directory::

    DIR/report.md        the claims table (statement, paper, measured [95% CI], n, verdict),
                         then each section's text and links to its figures
    DIR/report.html      the same, self-contained: figures as base64 PNG data URIs, inline CSS,
                         no external links or scripts
    DIR/figures/*.png    each figure, saved at ``dpi`` (120) and closed
    DIR/claims.json      every claim (see :mod:`overparam.report.claims`)

Rendering computes nothing: a study's ``summarize`` turns stored runs into :class:`Section`
objects, so a report can be rebuilt from ``results.sqlite`` alone. :func:`status_line` is the
sentence a report carries about the store itself: how many runs are done, failed, diverged or
still pending, and why the failed ones failed.
"""

from __future__ import annotations

import base64
import html
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overparam import __version__
from overparam.errors import ConfigError
from overparam.report.claims import (
    Claim,
    check_unique_ids,
    write_claims_json,
    write_text_atomic,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
NOTE = ("Measured values are estimates over seeds with 95% intervals (Student-t for means and paired differences, "
        "log-scale t for ratios, t over per-seed fits for slopes, a delete-one-seed jackknife for correlations over "
        "runs; the method is in claims.json); n is the number of seeds. Direction: whether the interval lies on the "
        "paper's side of the effect; magnitude: whether it lies inside the tolerance band around the paper's number "
        "(a factor 2 for ratios, ±max(1 pp, 50%) for differences, ±0.1 for exponents, ±0.2 for correlations). "
        "Verdicts: reproduced (both hold), direction only (the magnitude is outside the band), not reproduced, "
        "inconclusive (the interval decides neither, or fewer than 5 seeds).")
VERDICT_TEXT = {"reproduced": "reproduced", "direction_only": "direction only", "not_reproduced": "not reproduced",
                "inconclusive": "inconclusive"}


@dataclass
class Section:
    """One part of a report: a title, markdown-ish text (paragraphs separated by blank lines,
    ``- `` bullet lists, ``` fenced blocks, `code` and **bold**), figures as ``(name, Figure)``
    pairs (saved as ``figures/<name>.png``; names unique within a report) and claims."""

    title: str
    text: str = ""
    figures: list[tuple[str, Figure]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)


@dataclass(frozen=True)
class ReportPaths:
    directory: Path
    markdown: Path
    html: Path
    claims: Path
    figures: list[Path]


# --- the store's state ---------------------------------------------------------------------------


def error_reason(error: str | None, limit: int = 160) -> str:
    """One line saying why a run failed: the first line of its error, or, for a Python
    traceback (whose first line is just ``Traceback (most recent call last):``), its last line,
    which names the exception."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no error recorded"
    reason = lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]
    return reason if len(reason) <= limit else reason[: limit - 1] + "\u2026"


def status_line(store: Any, study: str, *, max_keys: int = 3) -> str:
    """A one-line summary of a study's runs in a :class:`~overparam.sweep.store.ResultsStore`,
    e.g. ``"6 runs: 3 done, 1 failed, 0 diverged, 2 pending. Failed: 1 × ValueError: boom
    (run k3)."``; identical failure reasons are grouped, most frequent first."""
    counts = store.status_counts(study)
    total = sum(counts.values())
    if total == 0:
        return f"No runs of study {study!r} in the store."
    parts = [f"{counts.get(s, 0)} {s}" for s in ("done", "failed", "diverged", "pending")]
    if counts.get("running", 0):
        parts.append(f"{counts['running']} running (in flight, or interrupted and not yet requeued)")
    line = f"{total} run{'s' if total != 1 else ''} of {study!r}: {', '.join(parts)}."
    if counts.get("failed", 0):
        keys: dict[str, list[str]] = defaultdict(list)
        for run in store.runs(study, status="failed"):
            keys[error_reason(run.get("error"))].append(str(run["run_key"]))
        tally = Counter({reason: len(k) for reason, k in keys.items()})
        groups = []
        for reason, count in sorted(tally.items(), key=lambda item: (-item[1], item[0])):
            shown = keys[reason][:max_keys]
            more = f" +{count - len(shown)} more" if count > len(shown) else ""
            label = "run" if count == 1 else "runs"
            groups.append(f"{count} \u00d7 {reason} ({label} {', '.join(shown)}{more})")
        line += " Failed: " + "; ".join(groups) + "."
    return line


# --- formatting ----------------------------------------------------------------------------------


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}"
    return str(value)


def _measured(claim: Claim) -> str:
    low, high = claim.ci
    interval = "CI n/a" if math.isnan(low) or math.isnan(high) else f"[{_number(low)}, {_number(high)}]"
    agreement = claim.agreement  # a statistic located on a grid (analysis.resampled_ci)
    located = "" if agreement is None else f" ({agreement:.0%} of seed resamples give it)"
    return f"{_number(claim.measured)} {interval}{located}"


def _paper(claim: Claim) -> str:
    return f"{_number(claim.paper)} ({claim.source})" if claim.source else _number(claim.paper)


def _verdict(claim: Claim) -> str:
    return VERDICT_TEXT[claim.verdict] + (f" ({claim.reason})" if claim.reason else "")


def _cells(claim: Claim) -> list[str]:
    return [claim.id, _paper(claim), _measured(claim), _number(claim.ratio_to_paper), str(claim.n_seeds),
            claim.direction or "n/a", claim.magnitude or "n/a", _verdict(claim)]


HEADER = ["Claim", "Paper (source)", "Measured [95% CI]", "Measured / paper", "n", "Direction", "Magnitude", "Verdict"]


def claim_lines(claims: Sequence[Claim]) -> list[str]:
    """A section's claims as a bullet list: what is measured, the test applied and the verdict."""
    lines = []
    for claim in claims:
        extra = ""
        if claim.test_examples:
            extra = f" Test set: {claim.test_examples} examples, binomial SE {_number(claim.binomial_se)}."
        lines.append(f"- `{claim.id}` ({_verdict(claim)}): {claim.statement} Measured {_measured(claim)} "
                     f"({claim.ci_method or 'interval method n/a'}, n = {claim.n_seeds}).{extra}"
                     + (f" Rule: {claim.rule}." if claim.rule else ""))
    return lines


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _figure_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a figure name must be a non-empty string, got {name!r}")
    stem = name.strip()
    stem = stem[:-4] if stem.lower().endswith(".png") else stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "figure"


def _inline_html(text: str) -> str:
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            escaped = html.escape(part)
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped))
    return "".join(out)


def text_to_html(text: str) -> str:
    """The markdown-ish section text as HTML: paragraphs, bullet lists, fenced blocks, headings."""
    blocks: list[str] = []
    lines = (text or "").strip("\n").splitlines()
    i = 0
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline_html(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in items) + "</ul>")
            items.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(f"<pre>{html.escape(chr(10).join(body))}</pre>")
        elif not stripped:
            flush()
        elif re.match(r"^#{1,6}\s", stripped):
            flush()
            blocks.append(f"<h3>{_inline_html(stripped.lstrip('#').strip())}</h3>")
        elif re.match(r"^[-*]\s", stripped):
            if paragraph:
                flush()
            items.append(stripped[2:].strip())
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + stripped  # continuation of a bullet
        else:
            if items:
                flush()
            paragraph.append(stripped)
        i += 1
    flush()
    return "\n".join(blocks)


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; background: #fff;
       line-height: 1.5; margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.7rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1.1rem; }
table.claims { border-collapse: collapse; width: 100%; font-size: 0.92rem; margin: 0.8rem 0; }
table.claims th, table.claims td { border: 1px solid #d0d0d0; padding: 0.35rem 0.5rem; text-align: left;
                                   vertical-align: top; }
table.claims th { background: #f3f3f3; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.verdict { font-weight: 600; white-space: nowrap; }
.verdict-reproduced { background: #d9f2de; color: #14532d; }
.verdict-not_reproduced { background: #fadcdc; color: #7f1d1d; }
.verdict-inconclusive { background: #fdf1c7; color: #713f12; }
.verdict-direction_only { background: #e4ecfb; color: #1e3a8a; }
figure { margin: 1.2rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; background: #f6f6f6; }
pre { padding: 0.6rem; overflow-x: auto; }
footer { margin-top: 3rem; font-size: 0.8rem; color: #777; }
""".strip()


def _claims_markdown(claims: Sequence[Claim]) -> list[str]:
    if not claims:
        return ["No claims in this report.", ""]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in _cells(claim)) + " |" for claim in claims]
    return lines + [""]


def _claims_html(claims: Sequence[Claim]) -> str:
    if not claims:
        return "<p>No claims in this report.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    rows = []
    for claim in claims:
        cells = [html.escape(c) for c in _cells(claim)]
        rows.append(f"<tr id=\"claim-{html.escape(claim.id)}\"><td><code>{cells[0]}</code></td><td>{cells[1]}</td>"
                    + "".join(f"<td class=\"num\">{c}</td>" for c in cells[2:5])
                    + f"<td>{cells[5]}</td><td>{cells[6]}</td>"
                    f"<td class=\"verdict verdict-{claim.verdict}\">{cells[7]}</td></tr>")
    return f"<table class=\"claims\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _close(figure: Figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # a figure made with pyplot stays registered until closed
        pyplot.close(figure)


# --- rendering -----------------------------------------------------------------------------------


def render_report(directory: str | Path, title: str, sections: Sequence[Section], *, preamble: str = "",
                  dpi: int = DPI, include_details: bool = False) -> ReportPaths:
    """Write report.md, report.html, figures/*.png and claims.json into ``directory``.

    ``preamble`` (markdown-ish text, e.g. :func:`status_line` of each study) goes under the
    title. Figures are saved and closed; names must be unique across sections. Claim ids must be
    unique. ``include_details`` adds each claim's ``details`` to claims.json.
    """
    from matplotlib.figure import Figure

    sections = list(sections)
    for section in sections:
        if not isinstance(section, Section):
            raise ConfigError(f"render_report takes Section objects, got {type(section).__name__}: {section!r}")
    claims = check_unique_ids(claim for section in sections for claim in section.claims)
    planned: list[tuple[Section, str, Figure]] = []
    names: set[str] = set()
    for section in sections:
        for entry in section.figures:
            try:
                raw, figure = entry
            except (TypeError, ValueError) as error:
                raise ConfigError(f"section {section.title!r}: figures must be (name, Figure) pairs, got {entry!r}") \
                    from error
            if not isinstance(figure, Figure):
                raise ConfigError(f"figure {raw!r} in section {section.title!r} is a {type(figure).__name__}, "
                                  "not a matplotlib Figure")
            name = _figure_name(raw)
            if name in names:
                raise ConfigError(f"figure name {raw!r} (file {name}.png) is used twice; figure names must be unique")
            names.add(name)
            planned.append((section, name, figure))

    directory = Path(directory)
    figure_dir = directory / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    paths: list[Path] = []
    for _, name, figure in planned:
        path = figure_dir / f"{name}.png"
        try:
            figure.savefig(path, dpi=dpi, format="png", facecolor="white")
        finally:
            _close(figure)
        pngs[name] = path.read_bytes()
        paths.append(path)
    by_section: dict[int, list[str]] = defaultdict(list)
    for section, name, _ in planned:
        by_section[id(section)].append(name)

    # report.md
    md = [f"# {title}", ""]
    if preamble.strip():
        md += [preamble.strip(), ""]
    md += ["## Claims", ""] + _claims_markdown(claims)
    md += [NOTE, ""]
    for section in sections:
        md += [f"## {section.title}", ""]
        if section.text.strip():
            md += [section.text.strip(), ""]
        for name in by_section[id(section)]:
            md += [f"![{name}](figures/{name}.png)", ""]
        if section.claims:
            md += ["Claims:", ""] + claim_lines(section.claims) + [""]
    markdown_path = write_text_atomic(directory / "report.md", "\n".join(md).rstrip() + "\n")

    # report.html
    body = [f"<h1>{html.escape(title)}</h1>"]
    if preamble.strip():
        body.append(text_to_html(preamble))
    body += ["<h2>Claims</h2>", _claims_html(claims),
             f"<p><small>{html.escape(NOTE)}</small></p>"]
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text.strip():
            body.append(text_to_html(section.text))
        for name in by_section[id(section)]:
            data = base64.b64encode(pngs[name]).decode("ascii")
            body.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(name)}\">"
                        f"<figcaption>{html.escape(name)}</figcaption></figure>")
        if section.claims:
            body.append("<p>Claims:</p>" + text_to_html("\n".join(claim_lines(section.claims))))
        body.append("</section>")
    body.append(f"<footer>Generated by overparam {html.escape(__version__)}.</footer>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
    html_path = write_text_atomic(directory / "report.html", page)

    claims_path = write_claims_json(claims, directory / "claims.json", include_details=include_details)
    return ReportPaths(directory=directory, markdown=markdown_path, html=html_path, claims=claims_path,
                       figures=paths)
