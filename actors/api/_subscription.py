"""One subscription of the remote backend: a ``Core/Watch`` stream kept open, resumed after the last seq."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from actors._backoff import Backoff
from actors.logs import get_logger
from actors.store import ChangeNotice

from ._protos import Protos
from ._remote_errors import status_details
from ._wire import notice_from_message

__all__ = ["Subscription"]

log = get_logger("actors.api")


class Subscription(threading.Thread):
    """Calls ``callback(notice)`` for every notice after ``since``, in order, once each.

    ``stream`` is the channel's ``Core/Watch`` method, ``protos()`` the current
    descriptors. The stream is opened again when it ends or breaks, after a delay
    from :attr:`BACKOFF` (back to its first delay once a notice arrives), asking
    for the notices after the last one delivered.
    """

    #: Waits between two streams: 0.05 s doubling to 5 s, each spread by half either way.
    BACKOFF = Backoff(initial=0.05, maximum=5.0, jitter=1.0)

    def __init__(
        self,
        endpoint: str,
        stream: Any,
        metadata: tuple[tuple[str, str], ...],
        protos: Callable[[], Protos],
        callback: Callable[[ChangeNotice], None],
        since: int,
    ) -> None:
        super().__init__(name=f"actors-watch-{endpoint}", daemon=True)
        self.endpoint = endpoint
        self._stream = stream
        self._metadata = metadata
        self._protos = protos
        self._callback = callback
        self.last_seq = since
        self._stop_event = threading.Event()
        self._call: Any = None
        self._call_lock = threading.Lock()

    def stop(self) -> None:
        """End the stream; wait for the thread unless called from it."""
        self._stop_event.set()
        with self._call_lock:
            call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self:
            self.join(timeout=5.0)

    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            attempt += 1
            protos = self._protos()
            request = protos.message("WatchRequest")(since_seq=self.last_seq)
            notice_cls = protos.message("ChangeNotice")
            try:
                call = self._stream(request.SerializeToString(), metadata=self._metadata, wait_for_ready=True)
                with self._call_lock:
                    self._call = call
                if self._stop_event.is_set():
                    call.cancel()
                    break
                for data in call:
                    attempt = 1
                    self._deliver(notice_from_message(notice_cls.FromString(data)))
            except grpc.RpcError as exc:
                if self._stop_event.is_set():
                    break
                self._report(exc)
            finally:
                with self._call_lock:
                    self._call = None
            if self._stop_event.wait(self.BACKOFF.delay(attempt)):
                break

    def _deliver(self, notice: ChangeNotice) -> None:
        if notice.seq <= self.last_seq:
            return
        self.last_seq = notice.seq
        try:
            self._callback(notice)
        except Exception as exc:  # a broken subscriber must not end the watch
            log.error("change subscriber failed", error=repr(exc), notice=str(notice))

    def _report(self, exc: grpc.RpcError) -> None:
        code, details, _kind = status_details(exc)
        level = (
            log.error
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
            else log.info
        )
        level(
            "watch interrupted, resuming",
            endpoint=self.endpoint,
            code=code.name,
            details=details,
            after_seq=self.last_seq,
        )
