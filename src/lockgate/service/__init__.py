"""The daemon: the one place that wires the store, the BLE driver, the engine and the MQTT link.

Below it every layer takes plain values; here the configuration is read, systemd is told how the
start went (:mod:`lockgate.service.notify`), and the process ends with one of the exit codes of
:mod:`lockgate.service.exits`.
"""
