"""Fixtures of the engine's tests: a modelled radio, and a started station on a tmp_path file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.harness import Harness, model_locks
from tests.engine.radio_model import ModelRadio


@pytest.fixture
def radio() -> ModelRadio:
    return ModelRadio(*model_locks())


@pytest.fixture
async def harness(tmp_path: Path, radio: ModelRadio) -> AsyncIterator[Harness]:
    station = await Harness(tmp_path / "lockgate.db", radio).start()
    try:
        yield station
    finally:
        await station.close()
