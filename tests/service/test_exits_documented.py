"""The exit codes docs/station.md lists are the ones the code has, and each is used."""

from __future__ import annotations

import re
from pathlib import Path

from lockgate.service.exits import Exit

ROOT = Path(__file__).parents[2]
ROW = re.compile(r"^\| (\d+) \| ([A-Z_]+) \|", re.MULTILINE)


def test_the_table_of_docs_station_lists_every_exit_code_and_no_other() -> None:
    table = {int(code): name for code, name in ROW.findall((ROOT / "docs/station.md").read_text())}
    assert table == {code.value: code.name for code in Exit}


def test_every_exit_code_is_returned_somewhere() -> None:
    sources = "\n".join(
        path.read_text()
        for path in (ROOT / "src" / "lockgate").rglob("*.py")
        if path.name != "exits.py"
    )
    unused = [code.name for code in Exit if not re.search(rf"\bExit\.{code.name}\b", sources)]
    assert unused == []
