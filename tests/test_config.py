"""The configuration: the example file is valid, the environment overrides, every problem named.

Strict types (no text for numbers, no numbers for flags, no inf or nan), every file the
configuration names checked when it is loaded, and a property test: whatever the file and the
environment hold, loading gives a configuration or a ConfigError, never another exception.
"""

from __future__ import annotations

import datetime
import json
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.config import ConfigError, StoreSection, load
from lockgate.model import Profile

EXAMPLE = Path(__file__).parent.parent / "config" / "station.toml"


def station_config(tmp_path: Path, text: str | None = None) -> Path:
    """The example (or ``text``) with its files made in ``tmp_path`` instead of /etc and /var."""
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir(exist_ok=True)
    (etc / "mqtt.password").write_text("s3cret\n")
    (etc / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (etc / "backend-2026.jwk").write_text('{"kty": "OKP", "crv": "Ed25519", "x": "AA"}\n')
    text = EXAMPLE.read_text() if text is None else text
    text = text.replace("/etc/lockgate/", f"{etc}/").replace("/var/lib/lockgate/", f"{state}/")
    path = tmp_path / "lockgate.toml"
    path.write_text(text)
    return path


def test_the_example_is_valid(tmp_path: Path) -> None:
    config = load(station_config(tmp_path), environ={})
    assert config.station.id == "FR101"
    assert config.mqtt.tls
    assert config.mqtt.port == 8883
    assert [lock.address for lock in config.locks] == ["FC:3C:00:2A:2A:DD", "D4:12:99:00:45:03"]
    assert config.locks[1].profile is Profile.NOBOND


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_BLE__CONNECTION_SLOTS", "2")
    monkeypatch.setenv("LOCKGATE_MQTT__URL", "mqtt://127.0.0.1:1884")
    monkeypatch.setenv("LOCKGATE_BLE__WATCH", "false")
    monkeypatch.setenv("LOCKGATE_BLE__CONNECT_TIMEOUT_S", "7.5")
    monkeypatch.setenv("LOCKGATE_MQTT__CA_FILE", "")  # empty: unset, the system's CAs
    monkeypatch.setenv("LOCKGATE_INSTALL_ROOT", "/elsewhere")  # no section: not an override
    config = load(station_config(tmp_path))
    assert config.ble.connection_slots == 2
    assert config.ble.adapter == "hci0"
    assert (config.mqtt.tls, config.mqtt.port) == (False, 1884)
    assert (config.ble.watch, config.ble.connect_timeout_s) == (False, 7.5)
    assert config.mqtt.ca_file is None


def test_password_comes_from_its_file(tmp_path: Path) -> None:
    assert load(station_config(tmp_path), environ={}).mqtt.password() == "s3cret"


def test_every_problem_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[station]
id = "FR 101"
[mqtt]
url = "mqtts://broker"
cert_file = "CERT"
[ble]
connection_slots = 0
colour = "blue"
[[locks]]
bike = "B1"
name = "ILOCKIT-1"
guid = "00000000-0000-0000-0000-fc3c002a2add"
profile = "sharee"
[[locks]]
bike = "B1"
name = "ISHAREIT-2"
guid = "not-a-guid"
profile = "sharee"
"""
    )
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    path.write_text(path.read_text().replace("CERT", str(cert)))
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    problems = "\n".join(caught.value.problems)
    for expected in (
        "station.id",
        "mqtt: cert_file and key_file go together",
        "ble.connection_slots",
        "ble.colour",
        "locks.0: name 'ILOCKIT-1' is a nobond lock, but profile is sharee",
        "locks.1.guid",
    ):
        assert expected in problems, expected
    assert len(caught.value.problems) == 6
    path.write_text('[station]\nid = "S"\n[mqtt]\nurl = "http://broker"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.url: must be mqtt://"):
        load(path, environ={})


def test_duplicate_locks_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    lock = '[[locks]]\nbike = "B1"\nname = "ISHAREIT-1"\nguid = "{}"\nprofile = "sharee"\n'
    path.write_text(
        '[station]\nid = "S"\n'
        + lock.format("00000000-0000-0000-0000-000000000001")
        + lock.format("00000000-0000-0000-0000-000000000002")
    )
    with pytest.raises(ConfigError, match="bike 'B1' appears twice"):
        load(path, environ={})
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[station\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path / "broken.toml")


def _problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path, environ={} if environ is None else environ)
    return caught.value.problems


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('keepalive_s = "60"', "mqtt.keepalive_s: Input should be a valid integer"),
        ("keepalive_s = 60.0", "mqtt.keepalive_s: Input should be a valid integer"),
        ("keepalive_s = true", "mqtt.keepalive_s: Input should be a valid integer"),
        ("username = 7", "mqtt.username: Input should be a valid string"),
        ('[ble]\nwatch = "yes"', "ble.watch: Input should be a valid boolean"),
        ("[ble]\nwatch = 1", "ble.watch: Input should be a valid boolean"),
        (
            "[ble]\nconnect_timeout_s = inf",
            "ble.connect_timeout_s: Input should be a finite number",
        ),
        ("[ble]\nsync_interval_s = nan", "ble.sync_interval_s: Input should be a finite number"),
        ('[ble]\nsync_interval_s = "600"', "ble.sync_interval_s: Input should be a valid number"),
        ("[ble]\nsync_interval_s = false", "ble.sync_interval_s: Input should be a valid number"),
        ("[ble]\nadapter = 1979-05-27", "ble.adapter: a date or time is not a valid value here"),
    ],
)
def test_types_are_strict(tmp_path: Path, line: str, expected: str) -> None:
    # The line goes into [mqtt] (or starts its own [ble]) of a file otherwise valid.
    path = tmp_path / "lockgate.toml"
    store = f'[store]\npath = "{tmp_path}/lockgate.db"\nkey_file = "{tmp_path}/store.key"\n'
    path.write_text(f'[station]\nid = "S"\n{store}[mqtt]\n{line}\n')
    assert _problems(path) == [expected]


def test_every_named_file_is_checked(tmp_path: Path) -> None:
    path = station_config(tmp_path)
    etc = tmp_path / "etc"
    (etc / "mqtt.password").write_text("")
    (etc / "ca.pem").unlink()
    (etc / "client.pem").mkdir()
    text = path.read_text().replace("# cert_file = ", "cert_file = ")
    text = text.replace(f'# key_file = "{etc}/client.key"', 'key_file = "client.key"')
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    text = text.replace(f"{tmp_path}/state/lockgate.db", str(tmp_path))
    text = text.replace(f"{tmp_path}/state/store.key", f"{blocker}/sub/store.key")
    path.write_text(text)
    assert _problems(path) == [
        f"mqtt.password_file: {etc}/mqtt.password is empty",
        f"mqtt.ca_file: {etc}/ca.pem cannot be read (No such file or directory)",
        f"mqtt.cert_file: {etc}/client.pem is not a regular file",
        "mqtt.key_file: 'client.key' must be an absolute path",
        f"store.path: {tmp_path} is a directory",
        f"store.key_file: {blocker} is not a directory, so {blocker}/sub cannot be made",
    ]


def test_the_store_key_file_may_be_missing_but_not_empty(tmp_path: Path) -> None:
    path = station_config(tmp_path)
    config = load(path, environ={})
    assert not config.store.key_file.exists()  # made at the daemon's first start
    config.store.key_file.parent.mkdir(parents=True)
    config.store.key_file.write_text("")
    assert _problems(path) == [f"store.key_file: {config.store.key_file} is empty"]
    config.store.key_file.write_text("00" * 32)
    assert load(path, environ={}).store.key_file == config.store.key_file


def test_defaults_are_checked_like_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "minimal.toml"
    path.write_text(f'[station]\nid = "S"\n[store]\nkey_file = "{tmp_path}/store.key"\n')
    # store.path is left to its default, which names a file as much as the file would.
    monkeypatch.setattr(StoreSection.model_fields["path"], "default", Path("relative.db"))
    assert _problems(path) == ["store.path: 'relative.db' must be an absolute path"]
    monkeypatch.setattr(StoreSection.model_fields["path"], "default", tmp_path)
    assert _problems(path) == [f"store.path: {tmp_path} is a directory"]
    path.write_text("")
    assert _problems(path)[0] == "station.id: Field required"


def test_a_bad_environment_override_names_its_variable(tmp_path: Path) -> None:
    path = station_config(tmp_path)
    environ = {
        "LOCKGATE_BLE__CONNECTION_SLOTS": "two",
        "LOCKGATE_BLE__WATCH": "yes",
        "LOCKGATE_BLE__CONNECT_TIMEOUT_S": "nan",
        "LOCKGATE_BLE__SYNC_INTERVAL_S": "-inf",
        "LOCKGATE_BLE__COLOUR": "blue",
        "LOCKGATE_RADIO__POWER": "9",
        "LOCKGATE_LOCKS__0": "x",
        "LOCKGATE_MQTT__KEEPALIVE_S": "1",
        "LOCKGATE_STORE__PATH": "db.sqlite",
        "LOCKGATE_STORE__KEY_FILE": "",
    }
    assert _problems(path, environ) == [
        "LOCKGATE_BLE__COLOUR: [ble] has no key 'colour'",
        "LOCKGATE_BLE__CONNECTION_SLOTS: 'two' is not an integer",
        "LOCKGATE_BLE__CONNECT_TIMEOUT_S: 'nan' is not a finite number",
        "LOCKGATE_BLE__SYNC_INTERVAL_S: '-inf' is not a finite number",
        "LOCKGATE_BLE__WATCH: 'yes' is not true or false",
        "LOCKGATE_LOCKS__0: locks are set in the file only",
        (
            "LOCKGATE_RADIO__POWER: no section 'radio'"
            " (there are station, mqtt, ble, store, commands, home_assistant)"
        ),
        "LOCKGATE_STORE__KEY_FILE: empty, and [store] key_file cannot be unset",
        (
            "mqtt.keepalive_s (from LOCKGATE_MQTT__KEEPALIVE_S): "
            "Input should be greater than or equal to 5"
        ),
        "store.path (from LOCKGATE_STORE__PATH): 'db.sqlite' must be an absolute path",
    ]


# The property test: any TOML document (built from the real section and key names, and others),
# any environment, gives a Config or a ConfigError; a crash here would be a crash at start.

_NAMES = st.sampled_from(
    [
        "station",
        "mqtt",
        "ble",
        "store",
        "locks",
        "id",
        "url",
        "path",
        "key_file",
        "password_file",
        "ca_file",
        "keepalive_s",
        "watch",
        "connection_slots",
        "connect_timeout_s",
        "bike",
        "name",
        "guid",
        "profile",
        "max_outbox",
        "dead_after_s",
        "long_dead_after_s",
        "adapter",
    ]
) | st.text(min_size=1, max_size=12)
_SCALARS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "/",
            "/tmp",
            "/dev/null",
            "/nonexistent/x",
            "sharee",
            "ISHAREIT-1",
            "mqtt://127.0.0.1:1",
            "00000000-0000-0000-0000-000000000001",
            "a" * 300,
        ]
    )
    | st.datetimes()
    | st.dates()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=12,
)


def _toml_key(key: str) -> str:
    return json.dumps(key)  # a quoted key: TOML's basic strings share JSON's escapes


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    return str(value)


def _example_with(line: int, value: object) -> str:
    """The example with the value of its ``line``-th ``key = value`` line replaced."""
    lines = EXAMPLE.read_text().splitlines()
    assignments = [i for i, text in enumerate(lines) if " = " in text and not text.startswith("#")]
    index = assignments[line % len(assignments)]
    key = lines[index].split(" = ", 1)[0]
    lines[index] = f"{key} = {_toml_value(value)}"
    return "\n".join(lines)


_DOCUMENTS = (
    st.dictionaries(_NAMES, _VALUES, max_size=6).map(
        lambda document: "\n".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in document.items()
        )
    )
    | st.builds(_example_with, st.integers(min_value=0, max_value=100), _VALUES)
    | st.text(max_size=200)
)
_ENVIRONMENTS = st.dictionaries(
    st.builds(
        lambda section, key: f"LOCKGATE_{section}__{key}".upper(),
        st.sampled_from(["station", "mqtt", "ble", "store", "locks", "x"]),
        _NAMES,
    ),
    st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40),
    max_size=4,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_DOCUMENTS, environ=_ENVIRONMENTS)
def test_any_document_gives_a_config_or_a_config_error(
    tmp_path: Path, document: str, environ: dict[str, str]
) -> None:
    path = tmp_path / "any.toml"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    problems: list[str] = []
    try:
        config = load(path, environ=environ)
    except ConfigError as err:
        problems = err.problems
    else:
        assert config.station.id
    assert all(isinstance(problem, str) and problem for problem in problems)


def test_documents_the_generator_makes_are_toml() -> None:
    # The property test is only as strong as its documents: they parse, nested tables included.
    text = _toml_value({"a b": [1, 2.5, float("inf"), "x\n"], "t": datetime.date(2024, 1, 2)})
    assert tomllib.loads(f"v = {text}")["v"]["a b"][3] == "x\n"


def test_deep_or_huge_documents_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    for depth in (50, 400, 900, 5000):
        path.write_text("x = " + "[" * depth + "]" * depth + "\n")
        assert _problems(path)
    path.write_text("x = " + "9" * 5000 + "\n")
    assert _problems(path)[0].startswith(f"{path}: not valid TOML")
    path.write_bytes(b'[station]\nid = "\xff"\n')
    assert _problems(path) == [f"{path}: not UTF-8 text (invalid start byte)"]


def test_the_store_budget_keys_are_strict_and_overridable(tmp_path: Path) -> None:
    path = station_config(tmp_path)
    config = load(path, environ={"LOCKGATE_STORE__MAX_SIZE_MB": "256"})
    assert (config.store.max_refusals, config.store.refusal_window_s) == (10_000, 3600.0)
    assert config.store.max_size_mb == 256
    problems = _problems(
        path,
        {
            "LOCKGATE_STORE__MAX_REFUSALS": "lots",
            "LOCKGATE_STORE__REFUSAL_WINDOW_S": "inf",
            "LOCKGATE_STORE__MAX_SIZE_MB": "0",
        },
    )
    assert len(problems) == 3
    for variable in ("MAX_REFUSALS", "REFUSAL_WINDOW_S", "MAX_SIZE_MB"):
        assert any(f"LOCKGATE_STORE__{variable}" in problem for problem in problems), problems
