"""The root of lockgate's own errors: every error this project raises derives from
:class:`LockgateError`, each layer's from its own base under it.

- :class:`lockgate.protocol.ProtocolError`: a frame or session the protocol refuses.
- :class:`lockgate.config.ConfigError`, :class:`lockgate.mqtt.SettingsError`: a configuration.
- :class:`lockgate.store.StoreError`: the store, its schema (``SchemaError``), its key
  (``StoreKeyError``) and the command keys (``CommandKeyError``).
- :class:`lockgate.ble.errors.OperationError` and ``AdapterError``: the radio.
- :class:`lockgate.engine.EngineStateError`: the engine used out of turn.
- the command line's and the demo's own (``UsageError``, ``NoAnswerError``,
  ``BackendOfflineError``).

A caller that only needs to know "lockgate refused" catches :class:`LockgateError`; one that acts
on the cause catches the layer's. An error raised while handling another names it
(``raise … from``).
:class:`lockgate.radio.Withdrawn` is no error but a verdict (an operation the engine withdrew), and
stays outside.
"""

from __future__ import annotations


class LockgateError(Exception):
    """An error of lockgate's own making (not a bug): it names what is wrong and where."""
