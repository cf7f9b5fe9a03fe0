"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lofty_sim import LoftySimulator, SimConfig


@pytest.fixture
def make_sim() -> Iterator[Callable[..., LoftySimulator]]:
    """Build and start simulators: ``make_sim(**SimConfig kwargs)``; all stopped at teardown."""
    started: list[LoftySimulator] = []

    def factory(**kwargs: Any) -> LoftySimulator:
        sim = LoftySimulator(SimConfig(**kwargs))
        sim.start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()
