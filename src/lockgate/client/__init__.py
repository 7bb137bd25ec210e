"""A backend client library for lockgate stations: the MQTT contract (docs/mqtt-contract.md) from
the backend's side, the one ``lockgate ctl`` is built on.

.. code-block:: python

    async with StationClient("mqtts://broker:8883", "FR101") as client:
        final = await client.unlock("FR1540", user_id="u-6103", credentials=keys)

:class:`StationClient` holds one MQTT connection and the station's retained documents (``status``,
``locks/{bike}``); :meth:`~StationClient.send` re-sends a request until its receipt and follows it
to its end; :meth:`~StationClient.events` streams the events with ``seq`` gaps reported and
duplicates dropped. Errors are typed (:mod:`lockgate.client.errors`). The package speaks only the
contract: it imports :mod:`lockgate.contract` and :mod:`lockgate.model`, never the station daemon
(an import contract in pyproject.toml holds it to that).
"""

from lockgate.client.errors import (
    BrokerLostError,
    CannotSealError,
    ClientError,
    CommandRefusedError,
    CommandTimedOutError,
    NoAnswerError,
)
from lockgate.client.station import (
    Event,
    EventStream,
    Message,
    MessageStream,
    StationClient,
    request,
    state_of,
)

__all__ = [
    "BrokerLostError",
    "CannotSealError",
    "ClientError",
    "CommandRefusedError",
    "CommandTimedOutError",
    "Event",
    "EventStream",
    "Message",
    "MessageStream",
    "NoAnswerError",
    "StationClient",
    "request",
    "state_of",
]
