"""The command line, run as a user would: a real subprocess of the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys


def overparam(*args, env=None):
    return subprocess.run([sys.executable, "-m", "overparam.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_train_prints_metrics_and_writes_run_json(tmp_path):
    result = overparam("train", "--dataset", "mnist1d", "--n-train", "500", "--width", "64", "--depth", "1",
                       "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "status=done" in result.stdout and "test_acc=" in result.stdout
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["data"]["n_train"] == 500 and record["status"] == "done"
    assert record["provenance"]["torch"].startswith("2.13")
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_bad_input_is_one_line_without_traceback():
    for args, fragment in ((["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
                           (["train", "--width", "-5", "--quiet"], "-5"),
                           (["train", "--set", "train.lrr=1"], "train.lrr"),
                           (["train", "--device", "cuda:7", "--quiet"], "cuda:7")):
        result = overparam(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_data_list_shows_every_dataset(tmp_path):
    import os

    result = overparam("data", "list", env={**os.environ, "OVERPARAM_DATA": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in ("mnist1d", "mnist", "fashion-mnist", "cifar10", "linear_regression", "matrix_sensing"):
        assert name in result.stdout


def test_data_fetch_generates_and_reports_a_dataset():
    result = overparam("data", "fetch", "mnist1d")
    assert result.returncode == 0, result.stderr
    assert "mnist1d: train (4000, 40), test (1000, 40), classes 10" in result.stdout


def test_data_fetch_offline_names_the_file_to_place(tmp_path):
    import os

    result = overparam("data", "fetch", "cifar10", env={**os.environ, "OVERPARAM_DATA": str(tmp_path)})
    assert result.returncode == 2
    assert "cifar-10-python.tar.gz" in result.stderr and str(tmp_path / "cifar10") in result.stderr


# Threading defaults: set by the CLI before torch is imported, a user's own setting left alone

_SPY_TORCH_IMPORT = """
import json, os, sys
seen = {}

class Spy:  # records the OpenMP variables at the moment torch is first imported (libgomp reads them then)
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})

sys.meta_path.insert(0, Spy())
from overparam.cli import main
assert "torch" not in sys.modules, "importing overparam.cli imported torch"
main(["version"])
print(json.dumps(seen))
"""


def _clean_env(**extra):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **extra}


def test_cli_sets_the_openmp_default_before_torch_is_imported():
    from overparam.threads import DEFAULTS

    for extra, expected in (({}, {"OMP_WAIT_POLICY": None, **DEFAULTS}),
                            ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
                            ({"GOMP_SPINCOUNT": "7"}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "7"})):
        result = subprocess.run([sys.executable, "-c", _SPY_TORCH_IMPORT], capture_output=True, text=True,
                                timeout=300, env=_clean_env(**extra))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == expected, extra


def test_apply_defaults_leaves_a_users_setting_alone():
    from overparam.threads import DEFAULTS, apply_defaults, openmp_defaults

    environ = {"PATH": "/bin"}
    assert apply_defaults(environ) == DEFAULTS and environ == {"PATH": "/bin", **DEFAULTS}
    assert apply_defaults(environ) == {}  # idempotent: now set
    for own in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "0"},
                {"GOMP_SPINCOUNT": "infinite"}):
        environ = dict(own)
        assert openmp_defaults(environ) == {} and apply_defaults(environ) == {} and environ == own
    # in a process that has imported torch (this one), os.environ is not touched: too late to take effect
    import torch

    assert torch.__version__ and apply_defaults() == {}


def test_pool_workers_get_the_default_and_the_parent_environment_is_restored(monkeypatch):
    import concurrent.futures
    import multiprocessing
    import os

    from overparam.threads import DEFAULTS, worker_environment

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    with worker_environment() as added, concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert added == DEFAULTS
        assert pool.submit(os.getenv, "GOMP_SPINCOUNT").result(timeout=120) == DEFAULTS["GOMP_SPINCOUNT"]
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    with worker_environment() as added:
        assert added == {} and "GOMP_SPINCOUNT" not in os.environ


def test_provenance_records_the_openmp_wait_and_the_report_shows_it(tmp_path):
    from overparam.sweep.report import _setup_line
    from overparam.threads import DEFAULTS

    for extra, policy, spincount in (({}, None, DEFAULTS["GOMP_SPINCOUNT"]), ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE", None)):
        out = tmp_path / (policy or "default")
        result = overparam("train", "--dataset", "mnist1d", "--n-train", "200", "--width", "16", "--depth", "1",
                           "--steps", "3", "--device", "cpu", "--quiet", "--out", str(out), env=_clean_env(**extra))
        assert result.returncode == 0, result.stderr
        prov = json.loads((out / "run.json").read_text())["provenance"]
        assert prov["omp_wait_policy"] == policy and prov["gomp_spincount"] == spincount
        assert int(prov["torch_threads"]) >= 1
    row = {"status": "done", "device": "cpu", "package_version": "0.1.0", "git_revision": None, "updated_at": 0.0,
           "config": {}, "provenance": {"torch_threads": "2", "omp_wait_policy": None, "gomp_spincount": "10000"}}
    old = {**row, "provenance": {"torch_threads": "1"}}  # stored before these fields existed
    line = _setup_line("train", [row, old], {"seeds": 1})
    assert "(1/2 torch threads, GOMP_SPINCOUNT=10000)" in line
    row["provenance"] = {"torch_threads": "2", "omp_wait_policy": None, "gomp_spincount": None}
    assert "(2 torch threads, libgomp default wait)" in _setup_line("train", [row], {"seeds": 1})
