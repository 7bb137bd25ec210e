"""The import contracts of docs/architecture.md hold, and would catch each break they are for.

``lint-imports`` runs the contracts of pyproject.toml (``[tool.importlinter]``) over the package.
Each further case copies the package into a temporary directory, adds one import that the
architecture forbids, and checks that the contract written for it breaks: a contract that cannot
fail would check nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def module_file(package: Path, dotted: str) -> Path:
    """The file of module ``lockgate.<dotted>``; a stand-in is written for a layer not written
    yet, so that what the added line imports exists."""
    path = package.joinpath(*dotted.split("."))
    if path.is_dir():
        return path / "__init__.py"
    source = path.with_suffix(".py")
    if not source.exists():
        source.write_text('"""A stand-in for a layer not written yet."""\n')
    return source


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("protocol.frames", "import asyncio", "pure"),
        ("protocol.session", "import bleak", "pure"),
        ("protocol.status", "import lockgate.clock", "pure"),
        ("contract.documents", "import sqlite3", "pure"),
        ("radio", "import dbus_fast", "pure"),
        ("ble.driver", "import lockgate.store", "ble"),
        ("ble.link", "import lockgate.contract.documents", "ble"),
        ("engine.engine", "import lockgate.ble.driver", "engine"),
        ("engine.engine", "import lockgate.protocol.session", "engine"),
        ("store.outbox", "import lockgate.radio", "store"),
        ("store.records", "import lockgate.engine", "layers"),
        ("contract.request", "import lockgate.config", "layers"),
        ("radio", "import lockgate.ble.slots", "layers"),
        ("protocol.crc", "import lockgate.radio", "layers"),
        ("ble.slots", "import lockgate.engine", "layers"),
        ("client.station", "import lockgate.store", "client"),
        ("client.station", "import lockgate.mqtt.settings", "client"),
        ("service.daemon", "import lockgate.client", "layers"),
        # Layers not written yet are checked as soon as they exist.
        ("mqtt", "import lockgate.engine", "layers"),
        ("mqtt", "import lockgate.config", "layers"),
        ("demo", "import lockgate.service", "layers"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    package = tmp_path / "src" / "lockgate"
    shutil.copytree(ROOT / "src" / "lockgate", package)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for layer in ("service", "mqtt", "demo"):
        module_file(package, layer)
    path = module_file(package, module)
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert any(row.startswith(f"{contract}:") for row in broken), result.stdout
