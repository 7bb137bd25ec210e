"""``lockgate demo``: the whole product in one process tree, for people seeing it first.

An MQTT broker in this process (:mod:`~lockgate.demo.broker`), simulated locks on a private bus
(:mod:`~lockgate.demo.world`), the real daemon as a child process (:mod:`~lockgate.demo.station`),
a backend client that keeps what the station publishes (:mod:`~lockgate.demo.backend`), all
started and stopped together (:mod:`~lockgate.demo.session`); a scripted tour
(:mod:`~lockgate.demo.tour`) shown live (:mod:`~lockgate.demo.app`) or headless
(:mod:`~lockgate.demo.headless`). It imports the contract, model and config, never the service:
the daemon runs as it runs on a station, in its own process.
"""
