"""How a lockgate process ends: one exit code per cause, for systemd and for the operator.

The command line returns these, and the daemon exits with them. The daemon's own causes take the
sysexits(3) values, so that ``RestartPreventExitStatus=`` in the unit can tell a fault that a
restart cannot cure (a bad configuration) from one it may (docs/station.md lists them all).
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """The exit codes of every ``lockgate`` command."""

    OK = 0
    """Done: the check passed, the command succeeded, the daemon stopped on SIGTERM."""
    ERROR = 1
    """A check failed (``check-config`` found problems) or a command ended in error."""
    USAGE = 2
    """The command line itself is wrong (argparse's own code)."""
    NO_ANSWER = 3
    """``lockgate ctl``: the broker could not be reached, or the station did not answer in time."""
    UNAVAILABLE = 69
    """EX_UNAVAILABLE: the Bluetooth adapter (or the D-Bus it is reached through) is missing."""
    IO_ERROR = 74
    """EX_IOERR: the store cannot be created, opened or read (its file or directory cannot be made,
    corrupt, wrong station key, disk error)."""
    KEYS = 77
    """EX_NOPERM: a key of signed and sealed commands is unusable (the station's sealing key or a
    backend key: unreadable, open to others, not a key, the wrong kind). The station never starts
    without the keys it was told to hold; a restart cannot mend a key, so systemd does not."""
    CONFIG = 78
    """EX_CONFIG: the configuration is invalid; restarting cannot help, so systemd does not."""
