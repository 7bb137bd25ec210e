from tests.brokers import mosquitto

__all__ = ["mosquitto"]
