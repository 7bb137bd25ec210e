"""The systemd files: the unit verifies, its exposure rating stays at 1.5 or lower, and the
sysusers and tmpfiles files make the user and the permissions docs/station.md describes.

Everything runs against a temporary root (``--root``), never this machine's own configuration.
``systemd-analyze verify`` checks that ExecStart's binary exists, so the tree holds the venv's
path; the unit's dependencies (sysinit.target, …) come from a copy of this machine's unit files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SYSTEMD = Path(__file__).parent.parent.parent / "systemd"
UNIT = SYSTEMD / "lockgate.service"
EXEC_START = "/opt/lockgate/venv/bin/lockgate"
HOST_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 1.5


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120, check=False
    )


def _root(tmp_path: Path, *, with_binary: bool) -> Path:
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copytree(
        HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True, ignore_dangling_symlinks=True
    )
    shutil.copy(UNIT, units / "lockgate.service")
    if with_binary:
        binary = root / EXEC_START.lstrip("/")
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return root


def test_the_unit_verifies(tmp_path: Path) -> None:
    root = _root(tmp_path, with_binary=True)
    done = _run("systemd-analyze", "verify", f"--root={root}", "lockgate.service")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_would_see_a_missing_binary(tmp_path: Path) -> None:
    # The test above passes because the tree holds the binary, not because verify looks at nothing.
    root = _root(tmp_path, with_binary=False)
    done = _run("systemd-analyze", "verify", f"--root={root}", "lockgate.service")
    assert done.returncode != 0
    assert f"Command {EXEC_START} is not executable" in done.stderr


def test_the_exposure_rating_is_kept_low() -> None:
    done = _run("systemd-analyze", "security", "--offline=yes", "--no-pager", UNIT)
    found = re.search(r"Overall exposure level for lockgate\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def test_the_unit_says_what_the_station_needs() -> None:
    text = UNIT.read_text()
    settings = {
        tuple(line.split("=", 1))
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    for expected in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "77 78"),
        ("StateDirectory", "lockgate"),
        ("ConfigurationDirectory", "lockgate"),
        ("LoadCredential", "store.key:/etc/lockgate/store.key"),
        ("LoadCredential", "station.jwk:/etc/lockgate/station.jwk"),
        ("User", "lockgate"),
        ("SupplementaryGroups", "bluetooth"),
        ("ExecStart", f"{EXEC_START} run --config /etc/lockgate/lockgate.toml"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
    ]:
        assert expected in settings, expected
    assert re.search(r"^WatchdogSec=\d+$", text, re.MULTILINE)


def test_the_unit_waits_for_time_sync_without_needing_it() -> None:
    """Ordered after time-sync.target, never pulling it in: where nothing waits for the clock the
    target is reached at once, so a station without network starts all the same."""
    lines = [line for line in UNIT.read_text().splitlines() if not line.startswith("#")]
    after = " ".join(line.split("=", 1)[1] for line in lines if line.startswith("After="))
    assert "time-sync.target" in after.split()
    pulls = " ".join(
        line.split("=", 1)[1]
        for line in lines
        if line.split("=", 1)[0] in ("Wants", "Requires", "Requisite", "BindsTo")
    )
    assert "time-sync.target" not in pulls.split()


def test_the_time_wait_drop_in_bounds_the_wait(tmp_path: Path) -> None:
    """systemd-time-wait-sync.service with lockgate's drop-in verifies and waits two minutes, not
    for ever (its own unit says infinity)."""
    root = _root(tmp_path, with_binary=True)
    drop_in = root / "etc/systemd/system/systemd-time-wait-sync.service.d/lockgate.conf"
    drop_in.parent.mkdir(parents=True)
    shutil.copy(SYSTEMD / "time-wait-sync.conf", drop_in)
    binary = root / "lib/systemd/systemd-time-wait-sync"  # verify looks for ExecStart's binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    done = _run("systemd-analyze", "verify", f"--root={root}", "systemd-time-wait-sync.service")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    text = drop_in.read_text()
    assert re.search(r"^\[Service\]$", text, re.MULTILINE)
    assert re.search(r"^TimeoutStartSec=120$", text, re.MULTILINE)


def test_sysusers_and_tmpfiles_make_the_user_and_the_permissions(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for directory in ("usr/lib/sysusers.d", "usr/lib/tmpfiles.d", "etc/lockgate", "var/lib"):
        (root / directory).mkdir(parents=True)
    shutil.copy(SYSTEMD / "lockgate.sysusers", root / "usr/lib/sysusers.d/lockgate.conf")
    shutil.copy(SYSTEMD / "lockgate.tmpfiles", root / "usr/lib/tmpfiles.d/lockgate.conf")
    for name in ("lockgate.toml", "mqtt.password", "store.key", "station.jwk"):
        (root / "etc/lockgate" / name).write_text("x\n")
        (root / "etc/lockgate" / name).chmod(0o644)

    done = _run("systemd-sysusers", f"--root={root}")
    assert done.returncode == 0, done.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
    groups = {line.split(":")[0]: line.strip().split(":") for line in (root / "etc/group").open()}
    uid, gid = int(passwd["lockgate"][2]), int(passwd["lockgate"][3])
    assert passwd["lockgate"][6].strip() == "/usr/sbin/nologin"
    assert "lockgate" in groups["bluetooth"][3].split(",")

    done = _run("systemd-tmpfiles", "--create", f"--root={root}")
    assert done.returncode == 0, done.stderr

    def owner_mode(relative: str) -> tuple[int, int, int]:
        info = (root / relative).stat()
        return info.st_uid, info.st_gid, info.st_mode & 0o7777

    assert owner_mode("var/lib/lockgate") == (uid, gid, 0o700)
    assert owner_mode("etc/lockgate") == (0, 0, 0o755)
    assert owner_mode("etc/lockgate/lockgate.toml") == (0, gid, 0o640)
    assert owner_mode("etc/lockgate/mqtt.password") == (0, gid, 0o640)
    assert owner_mode("etc/lockgate/store.key") == (0, 0, 0o600)
    assert owner_mode("etc/lockgate/station.jwk") == (0, 0, 0o600)
