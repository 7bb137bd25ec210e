"""How the store keeps a payload: zlib-compressed against a preset dictionary when that is shorter.

A payload (an outbox message, a retained document, a command's events) is a small JSON object,
most of it the contract's field names and constant values. Compressed alone, zlib has nothing to
refer back to and keeps about two thirds of it; with a preset dictionary of that vocabulary a
command document shrinks from about 290 bytes to 70 and an event from 360 to 135. Two outbox rows
then share a 512-byte database page instead of taking one each, and a row's page is written twice
(queued, then removed once acknowledged): docs/store.md, "Writes a card survives".

Every payload is a JSON object, which starts with ``{``; a zlib stream starts with ``x``. A zlib
stream made with a preset dictionary says so in its header (the FDICT flag) and names it by its
Adler-32 checksum, so :func:`unpack` finds the dictionary a row was written with. **A dictionary
that has shipped is never changed**: add a new one to :data:`_DICTIONARIES` and make it
:data:`_CURRENT`; rows written before keep reading. Rows from before dictionaries (plain zlib, or
plain JSON) read as they were.
"""

from __future__ import annotations

import zlib

# The contract's vocabulary, most frequent last (zlib reaches back cheapest to what is nearest).
# Values that differ per station (id, coordinates, names) are not in it: a dictionary must stay
# the same for every station and every release.
_DICTIONARY_1 = (
    b'"radio_state":"adapter":"down_s":"step_s":"alarm":true"alarm":false'
    b'"health":"HEALTHY","health":"UNHEALTHY","health":"DEAD","hardware_state":"ERROR"'
    b'"dropped":"dropped_total":"booking_state":"booked","booking_state":"occupied",'
    b'"booking_state":"available","booking_state":"canceled","user_id":null,'
    b'{"bike":"","alias":"","guid":"00000000-0000-0000-0000-","hardware_id":"","profile":"sharee"'
    b',"profile":"nobond","state":{"value":"LOCKED","state":{"value":"UNLOCKED","changed_at":"'
    b'"hardware_state":"NORMAL","heartbeat_v2":{"health":"HEALTHY","dead_since":null,"last_seen":"'
    b'"booking":{"state":"available","user_id":null,"timeout_at":null},"battery":'
    b',"firmware":"","rssi":-6,"seq":'
    b'{"name":"RESPONSE_LOCK","value":"ok","timestamp":"{"name":"REQUEST_LOCK","value":null,'
    b'"timestamp":"{"name":"STATE_LOCKING","value":null,"timestamp":"'
    b'{"name":"STATE_LOCKED","value":null,"timestamp":"'
    b'{"name":"STATE_UNLOCKED","value":null,"timestamp":"'
    b'{"name":"RESPONSE_UNLOCK","value":"ok","timestamp":"'
    b'{"name":"STATE_UNLOCKING","value":null,"timestamp":"'
    b'{"name":"REQUEST_UNLOCK","value":null,"timestamp":"'
    b',"type":"health","bike":",type":"battery","bike":","type":"booking","bike":"'
    b',"cause":"manual","command_id":null,"cause":"sync","command_id":null,'
    b'"lock_state":"locking","previous":"unlocked"}"lock_state":"locked","previous":"locking"}'
    b'"lock_state":"unlocked","previous":"unlocking"}"lock_state":"unlocking","previous":"locked"}'
    b',"type":"lock_state","bike":"'
    b'","cause":"command","command_id":"'
    b'","latitude":"","longitude":"","replayed":false,"clock_synced":true,'
    b'{"event_id":"","station":"","boot_id":"","seq":'
    b'"state":{"value":"ERROR","error_code":"'
    b'"state":{"value":"NOT_SENT","state":{"value":"SENT","state":{"value":"RECEIVED"'
    b'"state":{"value":"SUCCESS",'
    b'"reason":null,"timeout_at":"2026-12-03T20:44:25.588Z"},"error_code":null,"events":['
    b'{"id":"","name":"lock","name":"unlock","station":"","bike":"","version":'
)
_DICTIONARIES = {zlib.adler32(_DICTIONARY_1): _DICTIONARY_1}
_CURRENT = _DICTIONARY_1
_FDICT = 0x20  # the zlib header's flag: a preset dictionary, named by the next four bytes


def pack(payload: bytes) -> bytes:
    """``payload`` as the store keeps it: compressed against the current dictionary when that is
    shorter, else as it is."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=_CURRENT)
    packed = compressor.compress(payload) + compressor.flush()
    return packed if len(packed) < len(payload) else payload


def unpack(stored: bytes) -> bytes:
    """The payload :func:`pack` kept (or an older store's plain zlib, or plain JSON)."""
    data = bytes(stored)
    if data[:1] != b"x":
        return data
    if len(data) > 6 and data[1] & _FDICT:
        dictionary = _DICTIONARIES.get(int.from_bytes(data[2:6], "big"))
        if dictionary is None:
            raise zlib.error("a payload packed with a dictionary this lockgate does not know")
        decompressor = zlib.decompressobj(zdict=dictionary)
        return decompressor.decompress(data) + decompressor.flush()
    return zlib.decompress(data)
