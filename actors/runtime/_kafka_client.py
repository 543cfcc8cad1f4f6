"""The event bus as the event-step actor sees it: its options and a consumer.

The actor talks to Kafka only through two small protocols, :class:`ConsumerClient`
here and :class:`~actors.runtime._kafka_producer.DeadLetterSink`, so its message
tests run with in-memory stand-ins and no broker. :class:`KafkaConsumerClient` and
:class:`~actors.runtime._kafka_producer.KafkaDeadLetterSink` are the real ones, on
kafka-python.

kafka-python facts this module deals with (3.0.12, the pinned version):

- A ``KafkaConsumer`` is not thread-safe: only the actor's thread uses it,
  except :meth:`KafkaConsumerClient.seek` and ``resume`` from the rebalance
  listener (they only set a partition's fetch state, as Java allows there).
- Its network I/O runs on a background thread, and a rebalance listener is
  called on that thread while the caller waits inside ``poll()`` or
  ``close()``. A plain listener may not call blocking consumer methods there
  (``commit()`` raises), so the listener is the asynchronous kind and awaits
  its commit.
- In an eager rebalance a partition handed back to the same member keeps its
  fetch position and its paused flag: the actor, which dropped the events it
  had buffered for it, seeks it back to its first unhandled event (see
  ``RebalanceHandler.assigned``) and resumes it.
- ``Fetcher.fetched_records`` parks the parsed records of a paused partition
  and puts them back only when its "next in line" slot is ``None``; a drained
  slot is falsy but not ``None``, so parked records stay parked and the
  partition is never fetched again. Records are parked only when a poll stops
  in the middle of a partition's records, so :meth:`KafkaConsumerClient.poll`
  always drains what the fetcher holds (:data:`DRAIN`): a paused partition
  then never has records parked.
- A consumer whose constructor cannot reach any broker raises
  ``KafkaTimeoutError`` and leaves its I/O thread running;
  :class:`_ClosingKafkaConsumer` closes it.
- A group join (JoinGroup then SyncGroup) runs as a task on the I/O thread, and
  ``poll()`` waits for it only until its own timeout. A join that outlives the
  ``poll()`` that started it can be lost: abandoned for good (the member stays
  "rebalancing" with no partitions) or thrown away and started again (a new
  rebalance of the whole group). Short polls, or a loaded machine where a join
  takes longer, make that likely; :func:`_finish_pending_joins` makes the next
  ``poll()`` finish the join instead.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import kafka
import kafka.errors
from kafka.structs import OffsetAndMetadata, TopicPartition

from actors.config import ConfigError, EventBus, validate_section

# kafka-python logs every connection attempt (an outage fills the log); the actor logs each
# change of the bus's state once instead. A level set by the user's logging config wins.
if logging.getLogger("kafka").level == logging.NOTSET:
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

__all__ = [
    "CONSUMER_DEFAULTS",
    "BusOptions",
    "ConsumerClient",
    "ConsumerFactory",
    "ConsumerSpec",
    "EventBusError",
    "KafkaConsumerClient",
    "RebalanceHandler",
    "bootstrap_servers",
    "is_outage",
    "subscription_pattern",
]

#: The port of a bootstrap server given as a bare host name.
DEFAULT_PORT = 9092

#: ``KafkaConsumer`` options the framework sets unless ``event_bus.consumer`` gives them: a member
#: that dies is noticed after 10 s (kafka-python's default is 45 s), heartbeats every 3 s; one fetch
#: answer holds at most 512 KiB (kafka-python's default is 50 MiB), which bounds what one poll,
#: which takes everything the consumer holds (:data:`DRAIN`), has to decode.
CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    "fetch_max_bytes": 512 * 1024,
}

#: ``max_records`` of every poll: more than the fetcher can hold, so a poll never stops in the middle
#: of a partition's fetched records (see the module docstring: kafka-python would park them).
DRAIN = 1 << 30

_GLOBAL_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")


class EventBusError(ValueError):
    """The ``event_bus`` configuration cannot work (no endpoint, an unknown kind...)."""


def bootstrap_servers(endpoint: Any) -> tuple[str, ...]:
    """``"host:port"``, ``"h1:p1,h2:p2"`` or a list of them, as a tuple of ``host:port``.

    A server without a port gets :data:`DEFAULT_PORT` (as kafka-python does).
    """
    if endpoint is None or endpoint == "" or endpoint == []:
        raise EventBusError("event_bus.endpoint is not set: give the Kafka bootstrap server(s), host:port")
    items: Iterable[Any] = [endpoint] if isinstance(endpoint, str) else endpoint
    servers: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise EventBusError(f"event_bus.endpoint: expected host:port strings, got {item!r}")
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("["):  # [IPv6]:port or [IPv6]
                port = part.rpartition("]")[2]
                if port and not (port.startswith(":") and port[1:].isdigit()):
                    raise EventBusError(f"event_bus.endpoint: {part!r} is not [address]:port")
                servers.append(part if port else f"{part}:{DEFAULT_PORT}")
            elif part.count(":") == 0:
                servers.append(f"{part}:{DEFAULT_PORT}")
            elif part.count(":") == 1:
                if not part.rpartition(":")[2].isdigit():
                    raise EventBusError(f"event_bus.endpoint: {part!r} is not host:port")
                servers.append(part)
            else:  # a bare IPv6 address
                servers.append(f"[{part}]:{DEFAULT_PORT}")
    if not servers:
        raise EventBusError("event_bus.endpoint is empty: give the Kafka bootstrap server(s), host:port")
    return tuple(servers)


def subscription_pattern(pattern: str, exclude: Iterable[str] = ()) -> str:
    """The regex handed to kafka-python for an event step's ``pattern``.

    kafka-python tests topic names with ``re.match`` (anchored at the start);
    the original framework's client searched the whole name. The result
    searches like the original (``^`` and ``$`` anchor as usual) and never
    matches the topics of ``exclude`` (the dead-letter topic: a step must not
    consume its own dead letters). Global inline flags such as ``(?i)`` are
    kept in front.
    """
    flags = ""
    m = _GLOBAL_FLAGS.match(pattern)
    if m:
        flags, pattern = m.group(0), pattern[m.end() :]
    guard = "".join(f"(?!{re.escape(topic)}$)" for topic in exclude)
    return f"{flags}{guard}.*?(?:{pattern})"


#: Kafka errors that waiting will not cure: configuration, authentication, authorization, versions.
_FATAL: tuple[type[BaseException], ...] = tuple(
    error
    for name in (
        "KafkaConfigurationError",
        "AuthorizationError",
        "AuthenticationFailedError",
        "SaslAuthenticationFailedError",
        "UnsupportedVersionError",
        "UnsupportedCodecError",
    )
    if isinstance(error := getattr(kafka.errors, name, None), type)
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means "the bus cannot be reached now" (retry later) rather than a mistake."""
    if isinstance(exc, _FATAL):
        return False
    return isinstance(exc, kafka.errors.KafkaError | OSError | TimeoutError)


class BusOptions(EventBus):
    """What an event-step actor needs to know about the bus: the ``event_bus`` section
    (:class:`actors.config.EventBus`, docs/configuration.md), its endpoint as ``servers``,
    the group (the synchronizer's name) and the dead-letter topic, its default filled in."""

    servers: tuple[str, ...]
    group: str
    dead_letter_topic: str

    @classmethod
    def from_settings(cls, event_bus: EventBus | Mapping[str, Any], group: str) -> BusOptions:
        """Read the ``event_bus`` section (a mapping is checked by the model).

        Raises:
            EventBusError: naming the key at fault, or when no endpoint is set.
        """
        if not isinstance(event_bus, EventBus):
            try:
                event_bus = validate_section(EventBus, event_bus, at=("event_bus",))
            except ConfigError as exc:
                raise EventBusError(str(exc)) from None
        return cls.model_construct(
            **{
                **dict(event_bus),
                "servers": bootstrap_servers(event_bus.endpoint),
                "group": group,
                "dead_letter_topic": event_bus.dead_letter_topic or f"{group}.dead-letters",
            }
        )


# -- the consumer seam ---------------------------------------------------------
class RebalanceHandler(Protocol):
    """The actor's side of a rebalance (called on the consumer's I/O thread)."""

    def revoking(self, partitions: set[TopicPartition], lost: bool) -> dict[TopicPartition, int]:
        """Partitions are being given up: the offsets to commit first (none when ``lost``)."""
        ...

    def revoked(
        self,
        partitions: set[TopicPartition],
        offsets: Mapping[TopicPartition, int],
        error: BaseException | None,
        lost: bool,
    ) -> None:
        """After the commit of ``offsets`` (``error`` if it failed); the partitions are gone."""
        ...

    def assigned(self, partitions: set[TopicPartition]) -> Mapping[TopicPartition, int]:
        """Partitions now belong to this consumer: the offsets some of them must be fetched from.

        A partition not in the answer is fetched from where the consumer stands (its
        committed offset when it is new to this member). Every assigned partition is
        resumed: the actor starts each one afresh.
        """
        ...


@dataclass(frozen=True)
class ConsumerSpec:
    """What to build: a consumer in ``options.group`` on ``topics`` or ``pattern``."""

    options: BusOptions
    name: str
    handler: RebalanceHandler
    topics: tuple[str, ...] = ()
    pattern: str | None = None


class ConsumerClient(Protocol):
    """The consumer operations the actor uses (all from the actor's thread)."""

    def poll(self, timeout: float) -> Mapping[TopicPartition, Sequence[Any]]:
        """Every record fetched so far, by partition, in offset order; waits up to ``timeout`` for some."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def paused(self) -> set[TopicPartition]:
        """The partitions whose fetching is paused, as the consumer sees it."""
        ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` from ``offset`` next (records fetched before are not returned)."""
        ...

    def position(self, tp: TopicPartition) -> int | None:
        """The offset the consumer fetches ``tp`` from next, if it knows it without asking the broker."""
        ...

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end offset of ``tp`` last seen in a fetch answer (``None`` before the first)."""
        ...

    def end_offsets(self, partitions: Iterable[TopicPartition], timeout: float) -> dict[TopicPartition, int]:
        """The end offsets of ``partitions``, asked of the broker; raises if it does not answer."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    def commit(self, offsets: Mapping[TopicPartition, int], timeout: float) -> None:
        """Commit and wait; raises if the commit failed."""
        ...

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int],
        callback: Callable[[Mapping[TopicPartition, int], BaseException | None], None],
    ) -> None:
        """Send a commit; ``callback(offsets, error)`` later, from a later ``poll()`` or commit."""
        ...

    def problem(self) -> str | None:
        """Why the bus looks unreachable right now, or ``None`` when it looks fine."""
        ...

    def joining(self) -> bool:
        """Whether the consumer is (re)joining its group (the watchdog ends a join that does not end)."""
        ...

    def close(self, timeout: float) -> None:
        """Leave the group (the handler's ``revoking`` runs first) and release everything."""
        ...


ConsumerFactory = Callable[[ConsumerSpec], ConsumerClient]


def _oam(offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


class _ClosingKafkaConsumer(kafka.KafkaConsumer):  # type: ignore[misc]  # kafka-python ships no type stubs
    """A ``KafkaConsumer`` that does not leak its I/O thread when no broker answers."""

    def __init__(self, *topics: str, **configs: Any) -> None:
        try:
            super().__init__(*topics, **configs)
        except BaseException:
            client = getattr(self, "_client", None)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            raise


def _finish_pending_joins(coordinator: Any) -> None:
    """Make every ``poll()`` carry a started group join to its end, as the Java client does.

    kafka-python 3.0.12 runs a join (JoinGroup then SyncGroup) as a task on the I/O
    thread, and a ``poll()`` waits for it only until its own timeout. Two of its
    rules then lose a join that outlives the ``poll()`` that started it:

    - ``poll()`` joins only while ``need_rejoin()``, which looks at why a rejoin was
      wanted, not at a join in flight. When the reason goes away during the join (the
      leader's new assignment now covers the topic metadata that asked for it), no
      later ``poll()`` finishes the join: the member stays "rebalancing" with no
      partitions and no heartbeats. Java asks ``rejoinNeededOrPending()``; so does
      this ``need_rejoin``.
    - ``join_group_async`` starts a new join when the one in flight is already done,
      discarding its assignment (or error): a new JoinGroup, a rebalance of the whole
      group, whose answer can be lost the same way. Before it looks, this wrapper
      puts in the finished join's place a task that answers with that same outcome.

    Either way the join ends exactly as if a ``poll()`` had waited for it. Nothing is
    changed on a kafka-python without those internals.
    """
    join = getattr(coordinator, "join_group_async", None)
    need_rejoin = getattr(coordinator, "need_rejoin", None)
    manager = getattr(coordinator, "_manager", None)
    if join is None or need_rejoin is None or manager is None or not hasattr(coordinator, "_join_task"):
        return

    def need_rejoin_or_pending() -> bool:
        return bool(need_rejoin()) or coordinator._join_task is not None

    async def outcome(finished: Any) -> Any:
        if finished.exception is not None:
            raise finished.exception
        return finished.value

    async def join_group_async(timeout_ms: Any = None) -> Any:
        finished = coordinator._join_task
        if finished is not None and finished.is_done:
            # This runs on the I/O thread's loop: the new task cannot end before the join below awaits it.
            coordinator._join_task = manager.call_soon(outcome, finished)
        try:
            return await join(timeout_ms=timeout_ms)
        except BaseException:
            task = coordinator._join_task
            if task is not None and task.is_done:
                coordinator._join_task = None  # its error was raised just now: the next poll joins afresh
            raise

    coordinator.need_rejoin = need_rejoin_or_pending
    coordinator.join_group_async = join_group_async


def _make_listener(client: KafkaConsumerClient) -> Any:
    class Listener(kafka.AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no type stubs
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await client._revoke(set(revoked), lost=False)

        async def on_partitions_lost(self, lost: Any) -> None:
            await client._revoke(set(lost), lost=True)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            client._assigned(set(assigned))

    return Listener()


class KafkaConsumerClient:
    """:class:`ConsumerClient` on a kafka-python ``KafkaConsumer`` with manual commits.

    Offsets are committed only when the actor says so; a new group starts at
    the earliest retained event (``auto_offset_reset="earliest"``, as the
    original framework), overridable through ``event_bus.consumer`` like
    :data:`CONSUMER_DEFAULTS`. Construction raises when no bootstrap server answers within
    ``options.connect_timeout``.
    """

    def __init__(self, spec: ConsumerSpec) -> None:
        options = spec.options
        self._handler = spec.handler
        config: dict[str, Any] = {
            **CONSUMER_DEFAULTS,
            "bootstrap_servers": list(options.servers),
            "group_id": options.group,
            "client_id": f"{options.group}.{spec.name}",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "metadata_max_age_ms": max(1, int(options.metadata_max_age * 1000)),
            "bootstrap_timeout_ms": max(1, int(options.connect_timeout * 1000)),
        }
        config.update(options.consumer)
        self._consumer = _ClosingKafkaConsumer(**config)
        try:
            _finish_pending_joins(getattr(self._consumer, "_coordinator", None))
            listener = _make_listener(self)
            if spec.pattern is not None:
                pattern = subscription_pattern(spec.pattern, [options.dead_letter_topic])
                self._consumer.subscribe(pattern=pattern, listener=listener)
            else:
                self._consumer.subscribe(topics=list(spec.topics), listener=listener)
        except BaseException:
            self._consumer.close(autocommit=False)
            raise

    # -- rebalance (on the consumer's I/O thread) ------------------------------
    async def _revoke(self, partitions: set[TopicPartition], lost: bool) -> None:
        offsets = self._handler.revoking(partitions, lost)
        error: BaseException | None = None
        if offsets and not lost:
            try:
                await self._consumer.commit_async(_oam(offsets))
            except Exception as exc:
                error = exc
        self._handler.revoked(partitions, offsets if not lost else {}, error, lost)

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        seeks = self._handler.assigned(partitions)
        paused = self._consumer.paused()
        self._consumer.resume(*(tp for tp in partitions if tp in paused))
        for tp, offset in seeks.items():
            if tp in partitions:
                self._consumer.seek(tp, offset)

    # -- ConsumerClient -------------------------------------------------------
    def poll(self, timeout: float) -> Mapping[TopicPartition, Sequence[Any]]:
        result: Mapping[TopicPartition, Sequence[Any]] = self._consumer.poll(
            timeout_ms=max(0, int(timeout * 1000)), max_records=DRAIN
        )
        return result

    # A partition given up between the actor's assignment() and its next call (the I/O thread
    # applies rebalances) is skipped: kafka-python raises for partitions it no longer has.
    def _assigned_only(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        assigned = self._consumer.assignment()
        return [tp for tp in partitions if tp in assigned]

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.pause(*self._assigned_only(partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.resume(*self._assigned_only(partitions))

    def paused(self) -> set[TopicPartition]:
        return set(self._consumer.paused())

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self._assigned_only([tp]):
            self._consumer.seek(tp, offset)

    def position(self, tp: TopicPartition) -> int | None:
        state = self._consumer._subscription.assignment.get(tp)
        position = getattr(state, "position", None)
        return getattr(position, "offset", None)

    def highwater(self, tp: TopicPartition) -> int | None:
        state = self._consumer._subscription.assignment.get(tp)
        value: int | None = getattr(state, "highwater", None)
        return value

    def end_offsets(self, partitions: Iterable[TopicPartition], timeout: float) -> dict[TopicPartition, int]:
        ends: dict[TopicPartition, int] = self._consumer.end_offsets(
            list(partitions), timeout_ms=max(1, int(timeout * 1000))
        )
        return ends

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment() or ())

    def commit(self, offsets: Mapping[TopicPartition, int], timeout: float) -> None:
        if offsets:
            self._consumer.commit(_oam(offsets), timeout_ms=max(1, int(timeout * 1000)))

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int],
        callback: Callable[[Mapping[TopicPartition, int], BaseException | None], None],
    ) -> None:
        sent = dict(offsets)

        def done(_offsets: Any, response: Any) -> None:
            callback(sent, response if isinstance(response, BaseException) else None)

        try:
            self._consumer.commit_async(_oam(sent), callback=done)
        except Exception as exc:
            callback(sent, exc)

    def problem(self) -> str | None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        unknown = getattr(coordinator, "coordinator_unknown", None)
        if unknown is None:  # another kafka-python: no probe, rely on errors
            return None
        try:
            return "the group coordinator cannot be reached" if unknown() else None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def joining(self) -> bool:
        metadata = getattr(self._consumer, "group_metadata", None)
        if metadata is None:
            return False
        try:
            return bool(metadata().state != "<stable>")
        except Exception:
            return False

    def caught_up(self) -> bool:
        """In a stable group, with every assigned partition read up to its high-water mark."""
        consumer = self._consumer
        if consumer.group_metadata().state != "<stable>":
            return False
        for state in list(consumer._subscription.assignment.values()):
            highwater, position = state.highwater, getattr(state, "position", None)
            if highwater is None or position is None or position.offset < highwater:
                return False
        return True

    def close(self, timeout: float) -> None:
        self._consumer.close(autocommit=False, timeout_ms=max(1, int(timeout * 1000)))
