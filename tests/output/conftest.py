"""Fixtures for the output tests; the run-folder builder lives in tests/outputruns.py."""

import pytest

from outputruns import build_run


@pytest.fixture
def run_folder(tmp_path):
    return build_run(str(tmp_path))


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """One built run folder per test module (read-only use)."""
    return build_run(str(tmp_path_factory.mktemp("run")))
