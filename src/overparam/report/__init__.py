"""Reports: statistics over seeds (bootstrap CIs, rank correlation, log-log slopes, verdicts),
claims, figure helpers, and rendering to report.md / report.html / figures / claims.json."""

from overparam.report.claims import KEYS as CLAIM_KEYS
from overparam.report.claims import Claim, read_claims_json, write_claims_json
from overparam.report.figures import errorbar_plot, loglog_with_reference, new_figure
from overparam.report.render import ReportPaths, Section, render_report, status_line
from overparam.report.stats import (
                                    CI,
                                    VERDICTS,
                                    bootstrap_ci,
                                    loglog_slope_ci,
                                    ratio_ci,
                                    spearman_ci,
                                    verdict,
)

__all__ = [
                                    "CI",
                                    "CLAIM_KEYS",
                                    "VERDICTS",
                                    "Claim",
                                    "ReportPaths",
                                    "Section",
                                    "bootstrap_ci",
                                    "errorbar_plot",
                                    "loglog_slope_ci",
                                    "loglog_with_reference",
                                    "new_figure",
                                    "ratio_ci",
                                    "read_claims_json",
                                    "render_report",
                                    "spearman_ci",
                                    "status_line",
                                    "verdict",
                                    "write_claims_json",
]
