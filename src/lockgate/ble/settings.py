"""The BLE driver's settings, and the one place their defaults are written.

Plain frozen values with no bleak in them: the driver takes a :class:`RadioSettings`, the
configuration's ``[ble]`` section takes its defaults from here (so that a default is written
once), and the health tracker is built from ``dead_after_s`` and ``long_dead_after_s``.
Times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StepTimeouts:
    """How long each step may take, in seconds (the lock's own limits in docs/protocol.md)."""

    gatt_s: float = 5.0
    """One GATT write or read (the lock acknowledges an indication within 2 s)."""
    answer_s: float = 5.0
    """The lock's answer to a protocol request: IV, challenge, authorisation, a read's reply."""
    motion_s: float = 20.0
    """From a lock control command to the final status (the motor gives up after 15 s)."""
    disconnect_s: float = 5.0


@dataclass(frozen=True, slots=True)
class RadioSettings:
    """The driver's knobs (config section ``[ble]``); times in seconds."""

    adapters: tuple[str, ...] = ("hci0",)
    """The adapters to use, by BlueZ's name (``hci0``) or address; ``("all",)``: every one."""
    connection_slots: int = 3
    """Per adapter."""
    connect_timeout_s: float = 20.0
    connect_attempts: int = 3
    find_timeout_s: float = 10.0
    sync_interval_s: float = 600.0
    watch: bool = True
    watch_retry_s: float = 2.0
    scan_window_s: float = 2.0
    scan_interval_s: float = 20.0
    """Duty-cycled discovery: scan ``scan_window_s`` out of every ``scan_interval_s`` (0, or
    not above the window: scan all the time). While scanning, bluetoothd reports every lock's
    advertisements, which is most of an idle station's CPU; between windows the locks already
    heard stay reachable (BlueZ keeps their objects), an operation that looks for a lock not
    heard yet scans at once until it is found, and a lock that appears is noticed within
    ``scan_interval_s`` (docs/ble-driver.md, "Discovery that costs less")."""
    keep_booked_ready: bool = False
    """Keep a booked bike's lock connected and authorised with its provisioned credentials, so
    that its unlock costs only the lock control and the motor; the cost: a connection slot held
    for the booking (given up to a command, as a watch's) and the lock's battery, which a link
    costs more than advertising (docs/ble-driver.md, "A booked bike kept ready")."""
    dead_after_s: float = 900.0
    """A lock not reached for this long is DEAD (heartbeat_v2)."""
    long_dead_after_s: float = 86400.0
    """... and LONG_DEAD after this long."""
    probe_interval_s: float = 10.0
    """How often bluetoothd is asked something, to notice one that hangs."""
    probe_timeout_s: float = 5.0
    """bluetoothd not answering within this long is taken as hung (the radio is down)."""
    radio_lost_exit_s: float = 300.0
    """The daemon exits (for systemd to restart it) once no adapter was up for this long."""
    steps: StepTimeouts = field(default_factory=StepTimeouts)


DEFAULT_RADIO = RadioSettings()
"""Every default in one value, for the configuration's ``[ble]`` section to read."""
