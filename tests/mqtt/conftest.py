"""The brokers of tests/brokers.py as fixtures for the link's tests."""

from tests.brokers import mosquitto, mosquitto_tls

__all__ = ["mosquitto", "mosquitto_tls"]
