"""scripts/install-station, run into a temporary root (LOCKGATE_INSTALL_ROOT): what it installs,
that a second run keeps the operator's configuration, and that it refuses to run as non-root.

The venv is made for real; pip is left out (LOCKGATE_INSTALL_SKIP_PIP=1) because installing
lockgate's dependencies needs the package index, and tests reach nothing beyond loopback.
systemd-sysusers and systemd-tmpfiles are run for real, with --root: this machine is not changed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent.parent.parent
SCRIPT = SOURCE / "scripts" / "install-station"


def _install(root: Path, *prefix: str, source: Path = SOURCE) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "LOCKGATE_INSTALL_ROOT": str(root), "LOCKGATE_INSTALL_SKIP_PIP": "1"}
    return subprocess.run(
        [*prefix, str(SCRIPT), str(source)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _owner_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def test_installs_into_a_root_and_keeps_the_configuration_on_a_second_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = _install(root)
    assert done.returncode == 0, done.stderr
    assert "systemctl not called" in done.stdout

    venv_python = root / "opt/lockgate/venv/bin/python"
    assert (
        subprocess.run([venv_python, "-c", "import venv"], timeout=60, check=False).returncode == 0
    )
    for installed, source in [
        ("etc/systemd/system/lockgate.service", "systemd/lockgate.service"),
        ("usr/lib/sysusers.d/lockgate.conf", "systemd/lockgate.sysusers"),
        ("usr/lib/tmpfiles.d/lockgate.conf", "systemd/lockgate.tmpfiles"),
        ("opt/lockgate/docs/station.md", "docs/station.md"),
        (
            "etc/systemd/system/systemd-time-wait-sync.service.d/lockgate.conf",
            "systemd/time-wait-sync.conf",
        ),
        ("etc/lockgate/lockgate.toml", "config/station.toml"),
    ]:
        assert (root / installed).read_bytes() == (SOURCE / source).read_bytes(), installed

    users = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    (lockgate,) = [user for user in users if user[0] == "lockgate"]
    uid, gid = int(lockgate[2]), int(lockgate[3])
    bluetooth = [
        g for g in (root / "etc/group").read_text().splitlines() if g.startswith("bluetooth:")
    ]
    assert bluetooth[0].split(":")[3] == "lockgate"
    assert _owner_mode(root / "etc/lockgate/lockgate.toml") == (0, gid, 0o640)
    assert _owner_mode(root / "var/lib/lockgate") == (uid, gid, 0o700)
    assert _owner_mode(root / "etc/systemd/system/lockgate.service")[2] == 0o644

    config = root / "etc/lockgate/lockgate.toml"
    config.write_text('[station]\nid = "EDITED"\n')
    done = _install(root)
    assert done.returncode == 0, done.stderr
    assert "is there: kept as it is" in done.stdout
    assert config.read_text() == '[station]\nid = "EDITED"\n'
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd].count("lockgate") == 1
    assert _owner_mode(config) == (0, gid, 0o640)


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def test_refuses_to_run_as_non_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # The script through bash's standard input: user nobody may not reach the checkout itself
    # (a clone in a private temporary directory), and the refusal must come before anything.
    done = subprocess.run(
        [*NOBODY, "bash", "-s", "--", str(SOURCE)],
        input=SCRIPT.read_text(),
        env={**os.environ, "LOCKGATE_INSTALL_ROOT": str(root), "LOCKGATE_INSTALL_SKIP_PIP": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert "run as root" in done.stderr
    assert not root.exists()


def test_refuses_a_directory_that_is_not_lockgate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = _install(root, source=tmp_path)
    assert done.returncode == 1
    assert "is not a lockgate source directory" in done.stderr
    assert not root.exists()
