"""Opt-in markers: ``slow`` (long checks, --runslow) and ``network`` (needs the package
registry, --network)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")
    parser.addoption("--network", action="store_true", help="run tests that download from the package registry")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: opt in with --runslow"))
        if "network" in item.keywords and not config.getoption("--network"):
            item.add_marker(pytest.mark.skip(reason="network: opt in with --network"))
