"""The fixtures of the output and fault tests: a real site + store pair built once per session
through the CLI, copied for each test that may change it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.cli import main
from tests.helpers import TINY


@pytest.fixture(scope="session")
def previous_pair(tmp_path_factory) -> Path:
    """A real site + store pair, built once; tests copy it."""
    root = tmp_path_factory.mktemp("previous")
    assert main(["build", *TINY, "--out", str(root / "site"), "--store", str(root / "store")]) == 0
    return root


@pytest.fixture
def pair(previous_pair: Path, tmp_path: Path) -> tuple[Path, Path]:
    for name in ("site", "store"):
        shutil.copytree(previous_pair / name, tmp_path / name)
    return tmp_path / "site", tmp_path / "store"
