"""Reports: statistics over seeds (bootstrap CIs, rank correlation, log-log slopes, verdicts),
claims, figure helpers, and rendering to report.md / report.html / figures / claims.json.

The names below load their submodule on first use, so importing ``overparam.report`` (as every
study does) costs nothing until a report is made: matplotlib and scipy load only then.
"""

import importlib

_EXPORTS = {
    "CI": "stats", "VERDICTS": "stats", "bootstrap_ci": "stats", "loglog_slope_ci": "stats", "ratio_ci": "stats",
    "spearman_ci": "stats", "verdict": "stats",
    "CLAIM_KEYS": "claims", "Claim": "claims", "read_claims_json": "claims", "write_claims_json": "claims",
    "errorbar_plot": "figures", "loglog_with_reference": "figures", "new_figure": "figures",
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
