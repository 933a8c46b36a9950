"""Export a store to a flat table: one row per run, config parameters and metrics as columns.

    overparam export DIR --format csv       ->  DIR/results.csv   (pandas.read_csv(path))
    overparam export DIR --format parquet   ->  DIR/results.parquet (needs pandas + pyarrow)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from overparam.errors import ConfigError, DataError
from overparam.sweep.store import FILENAME, ResultsStore

FORMATS = ("csv", "parquet")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def table(directory: str | Path) -> list[dict[str, Any]]:
    """The store's runs as flat dicts: run columns, ``params.*`` and ``metrics.*``."""
    if not (Path(directory) / FILENAME).is_file():
        raise DataError(f"{Path(directory) / FILENAME} does not exist; run a study with --out {directory} first")
    rows = []
    with ResultsStore(directory) as store:
        for run in store.runs():
            row = {k: run[k] for k in ("study", "run_key", "seed", "status", "wall_time_s", "device",
                                       "package_version", "git_revision", "attempts")}
            _flatten("params", run["config"].get("params", run["config"]), row)
            _flatten("metrics", run["metrics"], row)
            rows.append(row)
    return rows


def export(directory: str | Path, fmt: str = "csv") -> Path:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; accepted: {FORMATS}")
    rows = table(directory)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = Path(directory) / f"results.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return path
    try:
        import pandas as pd
    except ImportError as error:
        raise ConfigError("parquet export needs pandas and pyarrow: pip install pandas pyarrow") from error
    try:
        pd.DataFrame(rows, columns=columns).to_parquet(path)
    except ImportError as error:
        raise ConfigError(f"parquet export needs pyarrow: pip install pyarrow ({error})") from error
    return path
