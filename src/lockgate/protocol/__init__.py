"""The Ilockit BLE lock protocol, both credential profiles, with no I/O (docs/protocol.md).

Pure functions and a sans-I/O session: bytes in, typed events and frames to write out. No bleak,
no asyncio, no clock. The BLE transport drives it; the simulator's firmware model shares its frames.
"""

from lockgate.protocol.credentials import (
    Credentials,
    NobondCredentials,
    ShareeCredentials,
    parse_credentials,
)
from lockgate.protocol.errors import (
    ChecksumError,
    CredentialsError,
    FrameError,
    ProtocolError,
    SessionStateError,
    UnexpectedFrameError,
)
from lockgate.protocol.gatt import Channel
from lockgate.protocol.identity import (
    IdentityError,
    address_to_guid,
    guid_to_address,
    profile_of_name,
)
from lockgate.protocol.indications import (
    GdioReader,
    Indication,
    IvIndicated,
    StatusIndicated,
    indication_of,
)
from lockgate.protocol.session import (
    AuthorisationFailed,
    Authorised,
    BatteryRead,
    ConfigRead,
    Output,
    Session,
    SessionEvent,
    SessionState,
    StatusReported,
    UnrecognisedStatus,
    Write,
)
from lockgate.protocol.status import Meaning, Notice, Status, meaning_of, parse_status

__all__ = [
    "AuthorisationFailed",
    "Authorised",
    "BatteryRead",
    "Channel",
    "ChecksumError",
    "ConfigRead",
    "Credentials",
    "CredentialsError",
    "FrameError",
    "GdioReader",
    "IdentityError",
    "Indication",
    "IvIndicated",
    "Meaning",
    "NobondCredentials",
    "Notice",
    "Output",
    "ProtocolError",
    "Session",
    "SessionEvent",
    "SessionState",
    "SessionStateError",
    "ShareeCredentials",
    "Status",
    "StatusIndicated",
    "StatusReported",
    "UnexpectedFrameError",
    "UnrecognisedStatus",
    "Write",
    "address_to_guid",
    "guid_to_address",
    "indication_of",
    "meaning_of",
    "parse_credentials",
    "parse_status",
    "profile_of_name",
]
