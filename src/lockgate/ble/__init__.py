"""The BLE transport: lock operations over bleak and BlueZ, radio scheduling, watching, health.

The driver implements the radio port (:mod:`lockgate.radio`, plain types with no bleak in them)
that the command engine and the service code against. It imports the port, the protocol and the
model, never the contract or the store: what it sees becomes documents only in the engine.
"""
