"""Reading a source in a worker process while the sync engine plans.

A sync's reading (the connector's parsing, the mapping, the validation) and its
planning each keep one core busy, one after the other, record by record: on an
unchanged night they are most of the run. ``ReadAhead`` moves the reading into
a worker process that starts at once, while the engine still loads its snapshot
of the database, and hands the records over in chunks through a pipe.

A thread here takes the chunks off the pipe as they come and holds up to
``AHEAD`` of them, so the worker keeps reading while the engine is busy
elsewhere (a pipe holds less than one chunk).

What crosses the pipe, in order: chunks of records, the worker's log records
(handled here by this process's own loggers, so every handler's redaction
applies as if the connector had logged here), and at the end either "done" or
the error that stopped the reading, raised here as the connector raised it.

The worker runs a ``RecordSource``: a picklable description of the records
(``adapter.sources.MappedSource``), never a generator, which cannot cross.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import threading
import traceback
from collections.abc import Iterator
from dataclasses import fields
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, Protocol

from adapter.records import CardholderRecord, RejectedRecord

CHUNK = 2_000
# Chunks received and not yet taken by the engine: enough for the worker to read through the snapshot's
# loading on an unchanged night (about 2 s, some 60 chunks at 200,000 rows), at about 250 KB a chunk.
AHEAD = 64
_RECORDS, _LOG, _DONE, _FAILED = "records", "log", "done", "failed"
# A cardholder record crosses as the plain tuple of its fields: pickling a frozen dataclass runs Python
# code per record, in the worker and here again.
_record_fields = attrgetter(*(field.name for field in fields(CardholderRecord)))


class RecordSource(Protocol):
    """What a worker can open by itself: picklable, and ``open()`` yields the records."""

    def open(self) -> Iterator[CardholderRecord | RejectedRecord]: ...


class ReadAhead:
    """The records of ``source``, read by a worker process that starts now. Use it as a context manager
    (or close it): leaving stops the worker, whether every record was read or the sync stopped early."""

    def __init__(self, source: RecordSource, *, chunk: int = CHUNK):
        # forkserver, as the sealer's workers: the scheduler runs syncs on several threads, and a fork
        # would copy locks other threads hold.
        context = multiprocessing.get_context("forkserver")
        self._receiving, sending = context.Pipe(duplex=False)
        self._worker = context.Process(target=_read_in_worker, args=(source, sending, chunk, _log_level()),
                                       name="stadspas-read-ahead", daemon=True)
        self._worker.start()
        sending.close()  # the worker holds the only sending end: its exit ends the pipe
        self._started = False
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=AHEAD)
        self._closing = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name="stadspas-read-ahead", daemon=True)
        self._receiver.start()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[CardholderRecord | RejectedRecord]:
        if self._started:
            raise RuntimeError("the records of a read-ahead can be read once")
        self._started = True
        try:
            while True:
                message = self._chunks.get()
                if message is None:
                    self._worker.join(timeout=10)  # reaped, so that its exit code can be told
                    raise SourceReadingStopped(self._worker.exitcode)
                kind, payload = pickle.loads(message)
                if kind == _RECORDS:
                    for row in payload:
                        yield CardholderRecord(*row) if type(row) is tuple else row
                elif kind == _LOG:
                    logging.getLogger(payload.name).handle(payload)
                elif kind == _FAILED:
                    error, remote_traceback = payload
                    raise error from _RemoteTraceback(remote_traceback)
                else:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self._closing.set()
        if self._worker.is_alive():
            self._worker.terminate()
        self._worker.join()
        self._receiver.join()  # it sees the pipe end (or the closing) within moments
        self._receiving.close()

    def _receive(self) -> None:
        """Move the worker's messages from the pipe to the queue; None when the pipe ends."""
        while not self._closing.is_set():
            try:
                message: bytes | None = self._receiving.recv_bytes()
            except (EOFError, OSError):
                message = None
            while not self._closing.is_set():
                try:
                    self._chunks.put(message, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if message is None:
                return


class SourceReadingStopped(RuntimeError):
    """The reading worker ended without saying why (killed, or out of memory)."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the process reading the source stopped unexpectedly (exit code {exitcode}); nothing was "
                         "written. Check the machine's memory and the system log, then run the sync again")


class _RemoteTraceback(Exception):
    """Where the error happened in the reading worker (its traceback, as text)."""

    def __str__(self) -> str:
        return str(self.args[0])


class _LogToPipe(logging.Handler):
    """The worker's log records go to the engine's process, their message already formatted."""

    def __init__(self, send: Any):
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self._send((_LOG, record))
        except Exception:  # noqa: BLE001 - logging must never stop the reading
            self.handleError(record)


def _read_in_worker(source: RecordSource, sending: Connection, chunk_size: int, level: int) -> None:
    def send(message: tuple) -> None:
        sending.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    root = logging.getLogger()
    root.handlers[:] = [_LogToPipe(send)]
    root.setLevel(level)
    try:
        chunk: list = []
        for record in source.open():
            chunk.append(_record_fields(record) if type(record) is CardholderRecord else record)
            if len(chunk) >= chunk_size:
                send((_RECORDS, chunk))
                chunk = []
        send((_RECORDS, chunk))
        send((_DONE, None))
    except BaseException as exc:  # noqa: BLE001 - every failure is the engine's to report
        send((_FAILED, (_crossable(exc), traceback.format_exc())))
    finally:
        sending.close()


def _crossable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling; else a RuntimeError that says the same."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _log_level() -> int:
    return logging.getLogger().getEffectiveLevel()
