"""The BLE transport: lock operations over bleak and BlueZ, radio scheduling, watching, health.

:mod:`lockgate.ble.operation` holds the driver's interface as plain types (no bleak in it): the
command engine and the service code against it; the driver implements it.
"""
