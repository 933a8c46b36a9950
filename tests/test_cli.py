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
