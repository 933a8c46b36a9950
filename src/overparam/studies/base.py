"""The study protocol: a config with presets, the grid of runs it expands to, one run.

A study is a :class:`Study` object in the registry (``overparam.studies.STUDIES``):

- ``config_type``: a frozen dataclass of typed fields with defaults (validated in
  ``__post_init__``); ``presets`` maps a preset name ('quick', 'paper', ...) to overrides.
- ``grid(config) -> list[RunSpec]``: every run of the sweep, each with a stable key (a hash of
  its resolved parameters), the parameters as JSON and the seed.
- ``run_one(spec, device) -> RunOutcome``: data -> model -> train -> measures for one run.
- optionally ``batch_key(spec)`` and ``run_batch(specs, device)``: runs with one batch key are
  executed together (the sweep executor groups them; ``--no-batch`` turns it off).
- the report, from stored rows alone (so it can be rebuilt after a crash, or from a partial
  sweep), in three steps: ``analyze(runs, config)`` -> a typed analysis (numbers only, no
  matplotlib; or :class:`~overparam.analysis.Missing` when there is nothing to analyze yet),
  ``claims(analysis, config)`` -> the claims, ``render(analysis, claims, config)`` -> report
  sections (text, tables, figures, readings), which place the claims. :meth:`Study.summarize`
  runs the three.

Configs resolve as: defaults < preset < config file < ``--set key=value`` overrides (values
parsed as YAML, so ``--set widths=[32,64]`` gives a list); an unknown key or a bad value is a
``ConfigError`` before anything runs. The resolved config is stored with every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from overparam.config import parse_override
from overparam.errors import ConfigError, choice_error


@dataclass(frozen=True)
class RunSpec:
    """One grid point: ``params`` (JSON-serializable) fully determine the run with ``seed``.

    A training study's point also carries its typed run config (``config``, a
    :class:`~overparam.config.RunConfig` whose JSON is ``params["run"]``): the typed value is
    what runs, the JSON is what the store keeps."""

    key: str
    params: dict[str, Any]
    seed: int
    config: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.config is None and isinstance(self.params.get("run"), dict):  # a spec rebuilt from its JSON
            from overparam.config import RunConfig

            object.__setattr__(self, "config", RunConfig.from_dict(self.params["run"]))


@dataclass
class RunOutcome:
    status: str  # done | diverged
    metrics: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


def run_key(study: str, params: Mapping[str, Any], seed: int) -> str:
    """A stable 16-hex-digit key of a study's run parameters and seed."""
    text = json.dumps({"study": study, "params": params, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    config_type: type
    grid: Callable[[Any], list[RunSpec]]
    run_one: Callable[[RunSpec, str | None], RunOutcome]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The report: (finished runs, resolved config) -> analysis; (analysis, config) -> claims;
    # (analysis, claims, config) -> report sections.
    analyze: Callable[[list[Any], Any], Any] | None = None
    claims: Callable[[Any, Any], list[Any]] | None = None
    render: Callable[[Any, list[Any], Any], list[Any]] | None = None
    # Optional batched execution: runs whose batch_key is equal (and not None) may be handed
    # to run_batch together, which returns one outcome per spec in order (e.g. seeds trained
    # as one vectorized model). Each outcome must match what run_one gives for its spec.
    batch_key: Callable[[RunSpec], Any] | None = None
    run_batch: Callable[[list[RunSpec], str | None], list[RunOutcome]] | None = None

    def summarize(self, rows: list[dict[str, Any]], config: Any) -> list[Any]:
        """Report sections from store rows (finished runs are analyzed): analyze -> claims -> render."""
        from overparam.analysis import Missing, runs_from_rows
        from overparam.report import Section

        if self.analyze is None:
            return []
        analysis = self.analyze(runs_from_rows(rows), config)
        if isinstance(analysis, Missing):
            return [Section(analysis.title, analysis.message)]
        claims = self.claims(analysis, config) if self.claims is not None else []
        return self.render(analysis, claims, config)

    def resolve(self, preset: str | None = None, file_values: Mapping[str, Any] | None = None,
                overrides: list[str] | Mapping[str, Any] = ()) -> Any:
        """Defaults < preset < file < overrides -> a validated config instance."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in self.presets:
                raise choice_error(f"preset for study {self.name!r}", preset, self.presets)
            values.update(self.presets[preset])
        values.update(file_values or {})
        pairs = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
        declared = {f.name for f in dataclasses.fields(self.config_type)}
        defaults = config_dict(self.config_type())
        for key, value in pairs:
            head, _, rest = key.partition(".")
            if rest and head in declared and isinstance(defaults.get(head), dict):
                # dotted key into a mapping field: --set model.width=64 -> model["width"] = 64
                nested = dict(values.get(head, defaults[head]))
                nested[rest] = value
                values[head] = nested
            else:
                values[key] = value
        unknown = sorted(set(values) - declared)
        if unknown:
            raise ConfigError(f"study {self.name!r} has no config key(s) {unknown}; accepted: {sorted(declared)}")
        coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        try:
            return self.config_type(**coerced)
        except TypeError as error:
            raise ConfigError(f"study {self.name!r}: {error}") from error


def config_dict(config: Any) -> dict[str, Any]:
    """A study config as plain JSON-ready data."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
