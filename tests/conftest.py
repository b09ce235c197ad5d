"""Test-wide settings: offline, and a private cache so tests never touch the user's."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
