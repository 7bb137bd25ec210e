"""lockgate: the station gateway between Ilockit smartlocks (BLE) and the sharing backend (MQTT).

The package is layered, lowest first: ``model`` (the domain's closed sets of values), ``protocol``
(the lock's BLE protocol, pure), then the BLE transport, the store, the command engine, the MQTT
link, and the service that wires them. A lower layer never imports a higher one.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lockgate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
