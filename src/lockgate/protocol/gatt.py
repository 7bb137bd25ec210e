"""The lock's GATT layout (docs/protocol.md, "GATT layout"): the UUIDs both sides agree on."""

from __future__ import annotations

from enum import StrEnum

LOCK_SERVICE = "0000f00f-1212-efde-1523-785fef13d123"
LEGACY_LOCK_SERVICE = "0000f00d-1212-efde-1523-785fef13d123"
GDIO = "0000baaa-1212-efde-1523-785fef13d123"
USDIO = "0000bbbb-1212-efde-1523-785fef13d123"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
DEVICE_INFORMATION_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION = "00002a26-0000-1000-8000-00805f9b34fb"
CLIENT_CHARACTERISTIC_CONFIGURATION = "00002902-0000-1000-8000-00805f9b34fb"

ATT_MTU = 23


class Channel(StrEnum):
    """The two characteristics a session talks over."""

    GDIO = "GDIO"
    USDIO = "USDIO"

    @property
    def uuid(self) -> str:
        return GDIO if self is Channel.GDIO else USDIO
