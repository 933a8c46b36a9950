"""Reports: intervals over seeds (stats), the verdict rules (verdicts), claims, figure helpers, and
rendering to report.md / report.html / figures / claims.json.

The names below load their submodule on first use, so importing ``overparam.report`` (as every
study does) costs nothing until a report is made: matplotlib and scipy load only then.
"""

import importlib

_EXPORTS = {
    "CI": "stats", "t_ci": "stats", "paired_ratio_ci": "stats", "seed_slope_ci": "stats",
    "clustered_spearman_ci": "stats", "trend_ci": "stats", "decide": "stats",
    "VERDICTS": "verdicts", "Published": "verdicts", "Tolerance": "verdicts", "judge": "verdicts",
    "CLAIM_KEYS": "claims", "Claim": "claims", "read_claims_json": "claims", "write_claims_json": "claims",
    "errorbar_plot": "figures", "errorbar_cis": "figures", "loglog_with_reference": "figures", "new_figure": "figures",
    "ReportPaths": "render", "Section": "render", "render_report": "render", "status_line": "render",
}
_RENAMED = {"CLAIM_KEYS": "KEYS"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'overparam.report' has no attribute {name!r}")
    module = importlib.import_module(f"overparam.report.{_EXPORTS[name]}")
    value = getattr(module, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return __all__
