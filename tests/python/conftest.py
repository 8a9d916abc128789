"""Shared fixtures: unique segment names that are always cleaned up."""
import os
import uuid

import pytest

import shmkit


def unique_name(tag: str = "t") -> str:
    return f"shmkit-test-{os.getpid()}-{tag}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def shm_name(request):
    """A fresh segment name, unlinked after the test if it still exists."""
    name = unique_name(request.node.name[:40].replace("[", "-").replace("]", "").replace("/", "_"))
    yield name
    try:
        shmkit.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture(params=["fork", "spawn"])
def mp_context(request):
    """Both start methods: fork shares the parent's mapping, spawn attaches anew."""
    import multiprocessing

    return multiprocessing.get_context(request.param)
