"""Every path a document or a docstring cites exists, so that a newcomer can follow it.

Scanned: the Markdown files (README.md, docs/, bench/README.md, hw-sim's), and in the Python
sources (src/, hw-sim/, tests/, bench/) the docstrings and comments; in the unit files and the
TOML examples, the comments. A citation is a relative path ending in ``.md``, or one with a folder
ending in a file suffix (``.py``, ``.toml``, ``.json``, ``.service``, …). It is followed from the
repository's root, from the citing file's folder, from ``docs/``, and, for a module named the
way the docs name them (``engine/worker.py``, ``lockgate/ble/slots.py``), from ``src/``,
``src/lockgate/`` and ``hw-sim/``. Absolute paths (``/etc/lockgate/…``) and URLs are no
citations of the repository and are left alone.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]

_SUFFIXES = "md|py|toml|json|service|sysusers|tmpfiles|png|txt|sh|cfg|ini"
CITATION = re.compile(rf"(?<![\w./:{{}}$~-])((?:[\w.-]+/)*[\w-][\w.-]*\.(?:{_SUFFIXES}))(?![\w/(])")
SKIPPED_DIRS = {
    ".venv",
    ".git",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".import_linter_cache",
    "results",
    "build",
    "dist",
}
PROSE_FILES = {".md"}
COMMENTED_FILES = {".toml", ".service", ".sysusers", ".tmpfiles"}


def _python_prose(source: str) -> Iterator[tuple[int, str]]:
    """The docstrings and comments of a module, with the line each starts on."""
    for node in ast.walk(ast.parse(source)):
        # a docstring (module, class, function, attribute) is a string standing as a statement
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            yield node.lineno, node.value.value
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def _commented(source: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source.splitlines(), start=1):
        if "#" in line:
            yield number, line[line.index("#") :]


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """The parts of ``path`` a reader reads as text, with their line numbers."""
    source = path.read_text(encoding="utf-8")
    if path.suffix in PROSE_FILES:
        yield from enumerate(source.splitlines(), start=1)
    elif path.suffix == ".py":
        yield from _python_prose(source)
    elif path.suffix in COMMENTED_FILES:
        yield from _commented(source)


def documents(root: Path) -> Iterator[Path]:
    found = []
    for directory, subdirectories, files in os.walk(root):
        # Not into the virtualenv, caches or build output (pruned, not walked and filtered).
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRS]
        for name in files:
            path = Path(directory) / name
            if path.suffix in PROSE_FILES | COMMENTED_FILES | {".py"}:
                found.append(path)
    yield from sorted(found)


def resolves(root: Path, citing: Path, cited: str) -> bool:
    bases = [root, citing.parent, root / "docs", root / "src", root / "src" / "lockgate"]
    bases.append(root / "hw-sim")
    return any((base / cited).exists() for base in bases)


def dangling(root: Path) -> list[str]:
    """``file:line: path`` for every cited path that does not exist."""
    found = []
    for path in documents(root):
        for line, text in prose(path):
            for match in CITATION.finditer(text):
                cited = match.group(1)
                if "/" not in cited and not cited.endswith(".md"):
                    continue  # a bare file name (``lockgate.toml``) is a name, not a citation
                if not resolves(root, path, cited):
                    number = line + text.count("\n", 0, match.start())
                    found.append(f"{path.relative_to(root)}:{number}: {cited}")
    return sorted(found)


def test_every_cited_path_exists() -> None:
    assert dangling(ROOT) == []


def test_the_scan_reads_the_repository() -> None:
    scanned = {path.relative_to(ROOT).as_posix() for path in documents(ROOT)}
    assert {"README.md", "docs/protocol.md", "src/lockgate/engine/worker.py"} <= scanned
    assert "systemd/lockgate.service" in scanned


def test_a_dangling_citation_is_named(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "station.md").write_text("How it starts.\n")
    (tmp_path / "README.md").write_text(
        "Start: docs/station.md, the unit (systemd/lockgate.service), and spec/product.md.\n"
    )
    package = tmp_path / "src" / "lockgate"
    package.mkdir(parents=True)
    (package / "daemon.py").write_text(
        '"""The daemon (station.md, Start).\n\nIts frames: protocol.md."""\n\n'
        "# See docs/station.md and engine/worker.py.\n"
        'PATH = "not/a/citation.md"  # code, not prose: left alone\n'
    )
    (tmp_path / "lockgate.service").write_text("# READY: see docs/station.md and docs/gone.md\n")
    assert dangling(tmp_path) == [
        "README.md:1: spec/product.md",
        "README.md:1: systemd/lockgate.service",
        "lockgate.service:1: docs/gone.md",
        "src/lockgate/daemon.py:3: protocol.md",
        "src/lockgate/daemon.py:5: engine/worker.py",
    ]
