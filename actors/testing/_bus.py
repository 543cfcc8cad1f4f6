"""An in-process event bus behind the event-step actor's consumer seam (no broker).

:class:`InProcessBus` keeps one partition per topic. The consumers it builds
(:meth:`InProcessBus.consumer`) and its dead-letter sink (:meth:`InProcessBus.sink`)
implement :class:`~actors.runtime._kafka_client.ConsumerClient` and
:class:`~actors.runtime._kafka_producer.DeadLetterSink`, so the production
:class:`~actors.runtime.events.EventStepActor` runs unchanged on top of it:
committed offsets per group, pauses, redelivery after a crash, dead letters.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.runtime._kafka_client import BusOptions, ConsumerSpec, subscription_pattern
from actors.runtime._kafka_offsets import TopicPartition

__all__ = ["BusRecord", "DeadLetter", "InProcessBus", "encode_value"]


@dataclass(frozen=True)
class BusRecord:
    """One record of the in-process bus (the attributes of a kafka-python ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    """An event the framework gave up on: the original key and value, why, and after how many tries."""

    topic: str
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    error_type: str
    attempts: int
    step: str
    headers: dict[str, bytes] = field(default_factory=dict)


def encode_value(value: Any) -> bytes | None:
    """An event value as bytes: bytes as they are, ``str`` as UTF-8, anything else as JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


class InProcessBus:
    """Topics with one partition each, in memory; thread-safe."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._cond = threading.Condition()
        self._topics: dict[str, list[BusRecord]] = {}
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        #: Set by :meth:`stop_waiting`: ``poll()`` never waits again.
        self._no_wait = False

    # -- producing ----------------------------------------------------------
    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Iterable[tuple[str, bytes | str]] = (),
    ) -> BusRecord:
        """Append one record to ``topic`` (created if new) and wake the consumers; returns it."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"send_event: the topic must be a non-empty string, got {topic!r}")
        raw_headers = tuple((str(n), v.encode() if isinstance(v, str) else bytes(v)) for n, v in headers)
        with self._cond:
            records = self._topics.setdefault(topic, [])
            record = BusRecord(
                topic,
                0,
                len(records),
                encode_value(key),
                encode_value(value),
                int(self._now() * 1000),
                raw_headers,
            )
            records.append(record)
            self._cond.notify_all()
        return record

    def records(self, topic: str) -> list[BusRecord]:
        """Every record written to ``topic`` so far, in order."""
        with self._cond:
            return list(self._topics.get(topic, ()))

    def committed(self, group: str, topic: str) -> int:
        """The offset ``group`` committed on ``topic`` (the next one it will read), 0 if none."""
        with self._cond:
            return self._committed.get((group, TopicPartition(topic, 0)), 0)

    # -- the seam -----------------------------------------------------------
    def consumer(self, spec: ConsumerSpec) -> _Consumer:
        """A :class:`~actors.runtime._kafka_client.ConsumerFactory`: a consumer of ``spec``."""
        return _Consumer(self, spec)

    def sink(self, options: BusOptions) -> _Sink:
        """A :class:`~actors.runtime._kafka_producer.SinkFactory`: writes dead letters to this bus."""
        return _Sink(self)

    def stop_waiting(self) -> None:
        """From now on ``poll()`` returns at once (the synchronizer is stopping: no stop waits on a poll)."""
        with self._cond:
            self._no_wait = True
            self._cond.notify_all()


class _Consumer:
    """One consumer of an :class:`InProcessBus` (a :class:`ConsumerClient`)."""

    def __init__(self, bus: InProcessBus, spec: ConsumerSpec) -> None:
        self.bus = bus
        self.spec = spec
        self.group = spec.options.group
        self.topics = set(spec.topics)
        self.pattern = (
            re.compile(subscription_pattern(spec.pattern, [spec.options.dead_letter_topic]))
            if spec.pattern is not None
            else None
        )
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.paused_set: set[TopicPartition] = set()
        self.closed = False

    def _wants(self, topic: str) -> bool:
        return topic in self.topics or (self.pattern is not None and self.pattern.match(topic) is not None)

    def _refresh(self) -> None:
        """Assign the matching topics that appeared (under the bus lock); tell the handler after."""
        new = {
            TopicPartition(t, 0)
            for t in self.bus._topics
            if self._wants(t) and TopicPartition(t, 0) not in self.assigned
        }
        for tp in new:
            self.assigned.add(tp)
            self.positions[tp] = self.bus._committed.get((self.group, tp), 0)
        if new:
            # A handler may answer offsets to fetch some partitions from; each starts resumed.
            seeks = self.spec.handler.assigned(new) or {}
            self.paused_set.difference_update(new)
            for tp, offset in seeks.items():
                if tp in new:
                    self.positions[tp] = offset

    def _fetch(self, max_records: int) -> dict[TopicPartition, list[BusRecord]]:
        batch: dict[TopicPartition, list[BusRecord]] = {}
        budget = max_records
        for tp in sorted(self.assigned - self.paused_set):
            if budget <= 0:
                break
            records = self.bus._topics.get(tp.topic, [])
            start = self.positions[tp]
            chunk = records[start : start + budget]
            if chunk:
                batch[tp] = chunk
                self.positions[tp] = start + len(chunk)
                budget -= len(chunk)
        return batch

    # -- ConsumerClient -----------------------------------------------------
    def poll(self, timeout: float, max_records: int = 1 << 30) -> Mapping[TopicPartition, Sequence[Any]]:
        deadline = time.monotonic() + max(0.0, timeout)
        with self.bus._cond:
            while True:
                self._refresh()
                batch = self._fetch(max_records)
                left = deadline - time.monotonic()
                if batch or left <= 0 or self.closed or self.bus._no_wait:
                    return batch
                self.bus._cond.wait(left)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        with self.bus._cond:
            self.paused_set.update(tp for tp in partitions if tp in self.assigned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Resume from the next offset not yet fetched (what the actor's buffer expects)."""
        with self.bus._cond:
            self.paused_set.difference_update(partitions)
            self.bus._cond.notify_all()

    def paused(self) -> set[TopicPartition]:
        with self.bus._cond:
            return set(self.paused_set)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        with self.bus._cond:
            if tp in self.assigned:
                self.positions[tp] = offset
                self.bus._cond.notify_all()

    def position(self, tp: TopicPartition) -> int | None:
        with self.bus._cond:
            return self.positions.get(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        with self.bus._cond:
            return len(self.bus._topics.get(tp.topic, ())) if tp in self.assigned else None

    def end_offsets(self, partitions: Iterable[TopicPartition], timeout: float) -> dict[TopicPartition, int]:
        with self.bus._cond:
            return {tp: len(self.bus._topics.get(tp.topic, ())) for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        with self.bus._cond:
            return set(self.assigned)

    def commit(self, offsets: Mapping[TopicPartition, int], timeout: float) -> None:
        with self.bus._cond:
            for tp, offset in offsets.items():
                self.bus._committed[(self.group, tp)] = offset

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, int],
        callback: Callable[[Mapping[TopicPartition, int], BaseException | None], None],
    ) -> None:
        sent = dict(offsets)
        self.commit(sent, 0.0)
        callback(sent, None)

    def problem(self) -> str | None:
        return None

    def joining(self) -> bool:
        return False

    def caught_up(self) -> bool:
        with self.bus._cond:
            return all(
                self.positions.get(tp, 0) >= len(self.bus._topics.get(tp.topic, ()))
                for tp in self.assigned - self.paused_set
            )

    def close(self, timeout: float) -> None:
        with self.bus._cond:
            assigned = set(self.assigned)
        handler = self.spec.handler
        offsets = handler.revoking(assigned, False)
        self.commit(offsets, timeout)
        # The handler's revoked() takes a fourth argument, lost, in later versions of the seam.
        revoked: Any = handler.revoked
        if len(inspect.signature(revoked).parameters) >= 4:
            revoked(assigned, offsets, None, False)
        else:
            revoked(assigned, offsets, None)
        with self.bus._cond:
            self.closed = True
            self.assigned.clear()
            self.bus._cond.notify_all()


class _Sink:
    """Dead letters written to the same in-process bus (a :class:`DeadLetterSink`)."""

    def __init__(self, bus: InProcessBus) -> None:
        self.bus = bus

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        callback: Callable[[BaseException | None], None],
    ) -> None:
        self.bus.send(topic, value, key=key, headers=headers)
        callback(None)

    def close(self, timeout: float) -> None:
        pass


def dead_letter_of(record: BusRecord) -> DeadLetter:
    """Read a dead-letter record's headers (see ``actors.runtime.events.DEAD_LETTER_HEADERS``)."""
    headers: dict[str, bytes] = {}
    for name, value in record.headers:
        headers.setdefault(name, value)

    def text(name: str) -> str:
        return headers.get(name, b"").decode("utf-8", "replace")

    return DeadLetter(
        topic=text("origin_topic"),
        offset=int(text("origin_offset") or -1),
        key=record.key,
        value=record.value,
        error=text("error"),
        error_type=text("error_type"),
        attempts=int(text("attempts") or 0),
        step=text("step"),
        headers=headers,
    )
