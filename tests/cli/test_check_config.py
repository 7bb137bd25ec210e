"""``lockgate check-config``: exit 0 with a summary, or 1 with every problem named; 2 on usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.cli import main
from lockgate.service.exits import Exit

EXAMPLE = Path(__file__).parent.parent.parent / "config" / "station.toml"


def _station(tmp_path: Path) -> Path:
    (tmp_path / "mqtt.password").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "backend-2026.jwk").write_text('{"kty": "OKP", "crv": "Ed25519", "x": "AA"}\n')
    text = EXAMPLE.read_text().replace("/etc/lockgate/", f"{tmp_path}/")
    path = tmp_path / "lockgate.toml"
    path.write_text(text.replace("/var/lib/lockgate/", f"{tmp_path}/state/"))
    return path


def test_a_valid_file_is_summed_up_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _station(tmp_path)
    assert main(["check-config", "--config", str(path)]) == Exit.OK
    out = capsys.readouterr().out
    assert out == f"{path}: valid: station FR101, 2 locks, broker mqtts://broker.example:8883\n"


def test_every_problem_is_named_and_the_exit_is_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _station(tmp_path)
    (tmp_path / "ca.pem").unlink()
    path.write_text(path.read_text().replace("keepalive_s = 60", 'keepalive_s = "60"'))
    monkeypatch.setenv("LOCKGATE_BLE__WATCH", "yes")
    assert main(["check-config", "--config", str(path)]) == Exit.ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: 3 problems",
        "  LOCKGATE_BLE__WATCH: 'yes' is not true or false",
        f"  mqtt.ca_file: {tmp_path}/ca.pem cannot be read (No such file or directory)",
        "  mqtt.keepalive_s: Input should be a valid integer",
    ]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == Exit.USAGE
    assert main(["check-config"]) == Exit.USAGE
    assert "--config" in capsys.readouterr().err
    assert main(["no-such-command"]) == Exit.USAGE
    assert main(["--help"]) == Exit.OK


def test_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "lockgate"
    missing = tmp_path / "missing.toml"
    done = subprocess.run(
        [script, "check-config", "--config", missing],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == Exit.ERROR
    assert f"{missing}: cannot be read (No such file or directory)" in done.stderr
    done = subprocess.run(
        [script, "check-config", "--config", _station(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.count("\n")) == (Exit.OK, 1)
