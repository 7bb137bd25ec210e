"""``lockgate ctl --sign-key`` against ``lockgate run`` with ``require_signed = true``.

The station takes signed requests only. ctl fetches the station's sealing key from its retained
``status``, signs the unlock and seals its keys: SUCCESS, exit 0, the lock open, and no key byte on
the broker. The same unlock unsigned is refused on ``errors`` (``ERRORS.UNSIGNED``): exit 1, the
error document printed, the lock not moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.store.command_keys import create_backend_keypair
from tests.ctl.harness import ctl, station
from tests.e2e.station import bike_of, keys_of, sharee, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_a_signed_and_sealed_unlock_through_ctl(tmp_path: Path) -> None:
    signing, public = tmp_path / "backend.jwk", tmp_path / "backend.pub.jwk"
    create_backend_keypair(signing, public)
    lock = sharee(1)
    keys = keys_of(lock)
    credentials = tmp_path / "keys.json"
    credentials.write_text(json.dumps(keys))
    credentials.chmod(0o600)
    commands = f'require_signed = true\nbackend_keys = ["{public}"]'
    async with station(tmp_path, world(lock), commands=commands) as s:
        unsigned = await ctl(
            s.broker, "unlock", bike_of(lock), "--credentials-file", str(credentials)
        )
        assert unsigned.code == 1, unsigned.stderr
        refusal = json.loads(unsigned.stdout)
        assert refusal["error_code"] == "ERRORS.UNSIGNED"
        assert (await s.sim.control.lock(lock.name)).bolt == "locked"

        signed = await ctl(
            s.broker,
            "unlock",
            bike_of(lock),
            "--user-id",
            "u-6103",
            "--credentials-file",
            str(credentials),
            "--sign-key",
            str(signing),
        )
        assert signed.code == 0, signed.stderr
        final = json.loads(signed.stdout)
        assert final["state"]["value"] == "SUCCESS"
        assert (await s.sim.control.lock(lock.name)).bolt == "unlocked"
        # The signed request went out as a compact JWS (the unsigned one before it was JSON), and
        # no copy of it holds a key: the credentials travelled sealed.
        tokens = [
            m.payload for m in s.backend.messages("commands") if not m.payload.startswith(b"{")
        ]
        assert tokens
        assert all(token.count(b".") == 2 for token in tokens)
        for key in (str(keys["K_seed"]), str(keys["K_u"])):
            assert all(key.encode() not in token for token in tokens)
