"""The ``overparam`` command line.

    overparam train [--dataset mnist1d --model mlp --width 256 ...] [--config FILE] [--set k=v ...]
    overparam run paper [--preset quick|mnist|paper] [--out DIR]   (the five studies, one report)
    overparam run theory|dynamics [--preset quick|paper] [--out DIR]   (the other suites)
    overparam run STUDY [--preset quick] [--seeds N] [--out DIR] [--workers N] [--backend local|ray] [--set k=v ...]
    overparam studies
    overparam report DIR
    overparam export DIR [--format csv|parquet]
    overparam data list
    overparam data fetch NAME [--root DIR]
    overparam version

Bad input prints one line (``error: ...``) and exits with status 2; no traceback.

Threading: unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, the command sets
``overparam.threads.DEFAULTS`` (a bounded OpenMP spin-wait) before torch is imported, which
keeps a busy machine from collapsing throughput; nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from overparam.errors import OverparamError


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model and print its metrics",
                       description="Train one model. Flags override the config file; --set overrides both.")
    p.add_argument("--config", help="YAML or TOML file with data/model/train/seed sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.1 --set model.width=512")
    p.add_argument("--dataset", help="dataset name (see `overparam data list`)")
    p.add_argument("--n-train", type=int, help="class-stratified training subset size")
    p.add_argument("--label-noise", type=float, help="fraction of training labels made wrong")
    p.add_argument("--model", help="model name: mlp, two_layer, cnn5, resnet18, cnn1d, deep_linear")
    p.add_argument("--width", type=int, help="model width: hidden units, or the channel width k of cnn5/resnet18/cnn1d")
    p.add_argument("--depth", type=int, help="hidden layers (mlp) or number of matrices (deep_linear)")
    p.add_argument("--optimizer", help="sgd, gd, adam, adamw, sam")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=float, help="training budget in epochs")
    p.add_argument("--steps", type=int, help="training budget in steps (instead of epochs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--out", help="directory for run.json and the final checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    mapping = {
        "dataset": "data.name", "n_train": "data.n_train", "label_noise": "data.label_noise",
        "model": "model.name", "width": "model.width", "depth": "model.depth",
        "optimizer": "train.optimizer", "lr": "train.lr", "momentum": "train.momentum",
        "batch_size": "train.batch_size", "seed": "seed",
    }
    out = {key: getattr(args, attr) for attr, key in mapping.items() if getattr(args, attr) is not None}
    if args.epochs is not None:
        out.update({"train.epochs": args.epochs, "train.steps": None})
    if args.steps is not None:
        out.update({"train.steps": args.steps, "train.epochs": None})
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from overparam.config import RunConfig, load_config_file, parse_override
    from overparam.run import run_one
    from overparam.train import save_checkpoint

    config = RunConfig.from_dict(load_config_file(args.config)) if args.config else RunConfig()
    config = config.with_overrides(_flag_overrides(args))
    config = config.with_overrides(dict(parse_override(o) for o in args.overrides))
    out = Path(args.out) if args.out else None

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(TextColumn("step"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}"), console=console, disable=args.quiet) as bar:
        task = bar.add_task("train", total=None, status="")

        def progress(step: int, total: int, metrics: dict) -> None:
            shown = "  ".join(f"{split} loss {metrics[split + '_loss']:.3f}"
                              + (f" acc {metrics[split + '_acc']:.3f}" if split + "_acc" in metrics else "")
                              for split in ("train", "test"))
            bar.update(task, completed=step, total=total, status=shown)

        record = run_one(config, device=args.device, progress=progress, quiet=args.quiet)

    m = record.metrics
    line = f"status={record.status} steps={m['steps']} params={m['num_parameters']} " + " ".join(
        f"{k}={m[k]:.4f}" for k in ("train_loss", "train_acc", "test_loss", "test_acc") if k in m)
    print(f"{config.data.name}/{config.model.name} seed={config.seed} run={record.run_key}: {line} "
          f"({record.wall_time_s:.1f}s on {record.provenance['device']})")
    if record.status == "diverged":
        print(f"diverged: {m['divergence']}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(record.to_json(), indent=2, default=str))
        save_checkpoint(out / "checkpoint", record.model, meta={"run_key": record.run_key, "config": record.config})
        print(f"wrote {out / 'run.json'} and {out / 'checkpoint'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from overparam.config import load_config_file
    from overparam.studies import SUITES
    from overparam.sweep.execute import run_study, run_suite

    if args.threads is not None:
        import torch

        from overparam.errors import check_positive_int

        torch.set_num_threads(check_positive_int("--threads", args.threads))
    out = Path(args.out) if args.out else Path("runs") / args.study
    options = dict(file_values=load_config_file(args.config) if args.config else None, overrides=args.overrides,
                   seeds=args.seeds, out=out, workers=args.workers, device=None if args.device == "auto" else args.device,
                   progress=not args.quiet, backend=args.backend, address=args.address, batch=not args.no_batch)
    if args.study in SUITES:
        summaries = run_suite(args.study, preset=args.preset or "quick", **options)
    else:
        summaries = [run_study(args.study, preset=args.preset, **options)]
    failures = []
    for summary in summaries:
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n)
        print(f"{summary.study}: {summary.total} runs in the grid, {summary.skipped} already done, ran {summary.ran}; "
              f"store {out / 'results.sqlite'}: {counts}")
        failures += summary.failures
    for key, why in failures:
        print(f"failed {key}: {why}")
    if args.study in SUITES:
        from overparam.sweep.report import build_report

        paths = build_report(out)
        print(f"wrote {paths.markdown}, {paths.html}, {paths.claims} and {len(paths.figures)} figure(s)")
        _print_verdicts(paths.claims)
    return 1 if failures else 0


def _print_verdicts(claims_path: Path) -> None:
    from overparam.report import read_claims_json

    for claim in read_claims_json(claims_path):
        low, high = claim.ci
        reason = f"; {claim.reason}" if claim.reason else ""
        print(f"  {claim.verdict:<15} {claim.id}: {claim.measured:.4g} [{low:.4g}, {high:.4g}], n={claim.n_seeds} "
              f"(paper: {claim.paper}{reason})")


def cmd_studies(args: argparse.Namespace) -> int:
    from overparam.studies import STUDIES, SUITES

    for study in STUDIES.values():
        presets = ", ".join(study.presets) or "-"
        print(f"{study.name:<20} {study.description} (presets: {presets})")
    for suite, names in SUITES.items():
        print(f"{suite:<20} suite: {', '.join(names)} into one store and one report (default preset: quick)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from overparam.sweep.report import build_report

    paths = build_report(args.directory)
    print(f"wrote {paths.markdown}, {paths.html}, {paths.claims} and {len(paths.figures)} figure(s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from overparam.sweep.export import export

    print(export(args.directory, args.format))
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from overparam.data import DATASETS
    from overparam.data.images import is_cached
    from overparam.data.sources import data_root

    table = Table(title=f"datasets (cache: {data_root()})")
    for column in ("name", "kind", "available", "description"):
        table.add_column(column)
    for entry in DATASETS.values():
        available = ("cached" if is_cached(entry.name) else "download needed") if entry.kind == "download" else "local"
        table.add_row(entry.name, entry.kind, available, entry.description)
    Console().print(table)
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from overparam.data import get_entry, load

    entry = get_entry(args.name)
    dataset = load(entry.name, root=args.root, device="cpu") if entry.kind == "download" else load(entry.name)
    print(f"{dataset.name}: train {tuple(dataset.x_train.shape)}, test {tuple(dataset.x_test.shape)}, "
          f"classes {dataset.num_classes}; source: {dataset.info.get('source', entry.kind)}")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    import torch

    from overparam import __version__
    from overparam.device import resolve_device

    print(f"overparam {__version__} (torch {torch.__version__}, default device {resolve_device(None)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="overparam", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    data = sub.add_parser("data", help="list or fetch datasets").add_subparsers(dest="data_command", required=True)
    data.add_parser("list", help="list datasets and whether they are cached")
    fetch = data.add_parser("fetch", help="download (or generate) a dataset and verify it")
    fetch.add_argument("name")
    fetch.add_argument("--root", help="directory that already holds the files (real datasets)")
    run = sub.add_parser("run", help="run a study's sweep into a results store (resumable)")
    run.add_argument("study", help="study name, or a suite such as 'paper' (see `overparam studies`)")
    run.add_argument("--preset", help="config preset, e.g. quick, mnist or paper (a suite's default: quick)")
    run.add_argument("--config", help="YAML or TOML file of study config values")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a study config value (lists for grid axes), e.g. --set seeds=3")
    run.add_argument("--seeds", type=int, help="number of seeds per grid point")
    run.add_argument("--out", help="output directory holding results.sqlite (default runs/STUDY)")
    run.add_argument("--workers", type=int, default=1, help="parallel worker processes (local backend)")
    run.add_argument("--backend", default="local", help="local (inline or process pool) or ray")
    run.add_argument("--address", help="Ray cluster address to join (default: start a local instance)")
    run.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    run.add_argument("--threads", type=int,
                     help="torch CPU threads for inline runs (default: all cores; 1 can be faster for small models "
                          "on a busy machine)")
    run.add_argument("--no-batch", action="store_true",
                     help="train every run alone (default: runs differing only in seed/LR train as one batched model)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    sub.add_parser("studies", help="list the studies")
    rep = sub.add_parser("report", help="render report.md/html, figures and claims.json from a results store")
    rep.add_argument("directory")
    exp = sub.add_parser("export", help="export a results store to a table")
    exp.add_argument("directory")
    exp.add_argument("--format", default="csv", help="csv or parquet")
    sub.add_parser("version", help="print versions and the default device")
    return parser


def main(argv: list[str] | None = None) -> int:
    # first, before anything imports torch: libgomp reads its environment once, at that import
    from overparam.threads import apply_defaults

    apply_defaults()
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "version": cmd_version, "run": cmd_run, "studies": cmd_studies,
                "export": cmd_export, "report": cmd_report}
    handler = handlers.get(args.command) or {"list": cmd_data_list, "fetch": cmd_data_fetch}[args.data_command]
    try:
        return handler(args)
    except OverparamError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
