"""The lock firmware as a state machine: any mix of sessions, motions and hands holds up."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lockgate.protocol import Channel, NobondCredentials, Session
from lockgate.protocol.frames import GdioFrame
from lockgate.protocol.session import SessionState
from lockgate.protocol.status import Status
from lockgate_sim.firmware import MAX_LINKS, Bolt, Effect, Indication, LinkDropped, Lock

CREDENTIALS = NobondCredentials(9, bytes(range(8)), bytes(range(32)))


class LockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.lock = Lock(
            name="ILOCKIT-1",
            address="D4:12:99:00:45:03",
            credentials=CREDENTIALS,
            random_bytes=self._random,
            motor_ms=1000,
        )
        self.now = 0.0
        self.sessions: dict[int, Session] = {}

    def _random(self, n: int) -> bytes:
        self.counter += 1
        return bytes((self.counter + i) % 256 for i in range(n))

    def _take(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, LinkDropped):
                self.sessions.pop(effect.link, None)
                continue
            if not isinstance(effect, Indication):
                continue
            assert len(effect.chunk) <= 20
            session = self.sessions.get(effect.link)
            if effect.channel is Channel.GDIO and effect.chunk[0] == 0x0E:
                status = GdioFrame.decode(effect.chunk).payload[0]
                # a final status tells where the bolt is at that moment
                if status == Status.OPEN:
                    assert self.lock.bolt is Bolt.OPEN
                    assert self.lock.motion is None
                elif status == Status.CLOSED:
                    assert self.lock.bolt is Bolt.CLOSED
                    assert self.lock.motion is None

            if session is None or session.state is SessionState.IDLE:
                continue
            out = session.receive(effect.channel, effect.chunk)
            for write in out.writes:
                for chunk in write.chunks:
                    self._take(self.lock.write(effect.link, write.channel, chunk, self.now))

    @precondition(lambda self: len(self.lock.links) < MAX_LINKS)
    @rule()
    def connect(self) -> None:
        link = self.lock.connect()
        self.lock.set_indications(link, Channel.GDIO, on=True)
        self.lock.set_indications(link, Channel.USDIO, on=True)
        self.sessions[link] = Session(CREDENTIALS)

    @rule(data=st.data())
    def authorise(self, data: st.DataObject) -> None:
        if not self.sessions:
            return
        link = data.draw(st.sampled_from(sorted(self.sessions)))
        write = self.sessions[link].start()
        self._take(self.lock.write(link, write.channel, write.frame, self.now))

    @rule(data=st.data(), unlock=st.booleans())
    def command(self, data: st.DataObject, unlock: bool) -> None:
        ready = [k for k, s in self.sessions.items() if s.state is SessionState.AUTHORISED]
        if not ready:
            return
        link = data.draw(st.sampled_from(sorted(ready)))
        session = self.sessions[link]
        write = session.unlock() if unlock else session.lock()
        self._take(self.lock.write(link, write.channel, write.frame, self.now))

    @rule(seconds=st.floats(min_value=0, max_value=3))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self._take(self.lock.advance(self.now))

    @rule()
    def close_by_hand(self) -> None:
        self._take(self.lock.close_by_hand(self.now))

    @rule()
    def open_by_hand(self) -> None:
        self._take(self.lock.open_by_hand(self.now))

    @rule(count=st.integers(0, 2))
    def jam(self, count: int) -> None:
        self.lock.jam(count)

    @rule(on=st.booleans())
    def alarm(self, on: bool) -> None:
        self._take(self.lock.set_alarm(on))

    @rule(moving=st.booleans(), fault=st.booleans())
    def bike_and_sensor(self, moving: bool, fault: bool) -> None:
        self.lock.set_bike_moving(moving)
        self.lock.set_sensor_fault(fault)

    @rule()
    def power_cycle(self) -> None:
        self._take(self.lock.power_cycle())

    @invariant()
    def bounded(self) -> None:
        assert len(self.lock.links) <= MAX_LINKS
        assert 0 <= self.lock.battery <= 100
        deadline = self.lock.next_deadline()
        assert deadline is None or deadline <= self.now + 15

    @invariant()
    def a_motion_is_the_only_thing_pending_beyond_a_second(self) -> None:
        deadline = self.lock.next_deadline()
        if deadline is not None and deadline > self.now + 1:
            assert self.lock.motion is not None


LockMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLockMachine = LockMachine.TestCase
