"""Shared fixtures: a small deterministic demo network and its store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.store import Store
from node.devchain import DemoNetwork, create_demo_network


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None, help="run the consensus simulator with this one seed")


@pytest.fixture
def network(tmp_path: Path) -> DemoNetwork:
    return create_demo_network(tmp_path / "net", validators=4, seed=11)


@pytest.fixture
def store(tmp_path: Path, network: DemoNetwork) -> Store:
    opened = Store.create(tmp_path / "data", network.genesis)
    yield opened
    opened.close()
