"""Reading a source in a worker process while the sync engine plans.

A sync's reading (the connector's parsing, the mapping, the validation) and its
planning each keep one core busy, one after the other, record by record: on an
unchanged night they are most of the run. ``ReadAhead`` moves the reading into
a worker process that starts at once, while the engine still loads its snapshot
of the database, and hands the records over in chunks through a pipe.

A thread here takes the chunks off the pipe as they come and holds up to
``AHEAD`` of them while the engine has not taken any yet, so the worker keeps
reading while the engine is busy elsewhere (a pipe holds less than one chunk).
Once the engine takes chunks, the store never grows again and shrinks to
``STEADY``: a store the engine keeps taking from needs no more. Without that it
would fill to ``AHEAD`` on every large first sync, where the engine is the
slower: some 16 MB held for nothing.

What crosses the pipe, in order: chunks of records, the worker's log records
(handled here by this process's own loggers, so every handler's redaction
applies as if the connector had logged here), and at the end either "done" or
the error that stopped the reading, raised here as the connector raised it.

The worker runs a ``RecordSource``: a picklable description of the records
(``adapter.sources.MappedSource``), never a generator, which cannot cross. It
starts when ``start()`` is called (the sync calls it once it holds the source's
lock, so a run that finds the source busy never contacts it) or at the first
record asked for.

Given the keyed hashes (``start(digest_with=...)``, as the sync does on a first load), the worker
also computes each cardholder record's content hash (``adapter.record_digests``),
which ``digested()`` hands over beside the record. On a first sync the planner's
core and the worker's are both nearly full: with the content hash and the BSN's
blind index on the worker's, the worker was the slower one; with neither, the
planner. The blind index stays with the planner. Only the blind-index key crosses
to the worker, never an encryption key, and what comes back is a digest, which the
database holds anyway.

The worker redacts its log records itself (``adapter.logs.RedactionFilter``)
before they cross, and prints nothing of its own: not a log record that fails to
format, nor a warning.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import fields
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, Protocol

from adapter.logs import RedactionFilter
from adapter.crypto import KeyedHashes
from adapter.record_digests import holder_content_hash
from adapter.records import CardholderRecord, RejectedRecord, cardholder_builder

CHUNK = 2_000
# Chunks received and not yet taken by the engine: enough for the worker to read through the snapshot's
# loading on an unchanged night (about 2 s, some 60 chunks at 200,000 rows), at about 250 KB a chunk.
AHEAD = 64
# Chunks the store may hold once the engine takes them: enough to bridge a pause of the worker's or the engine's.
STEADY = 4
# The worker sends a part-filled chunk once this long has passed since it last sent: a slow source (a SOAP
# service answering a page a minute) then shows it is moving long before a chunk is full.
FLUSH_SECONDS = 10.0
_RECORDS, _LOG, _DONE, _FAILED = "records", "log", "done", "failed"
_CLOSED = b"closed"  # put in the queue by close(), for a reader still waiting on it
# A cardholder record crosses as the plain tuple of its fields: pickling a frozen dataclass runs Python
# code per record, in the worker and here again.
_record_fields = attrgetter(*(field.name for field in fields(CardholderRecord)))
_FIELDS = len(fields(CardholderRecord))
# ... and is built again from it slot by slot, a third cheaper than the dataclass's own __init__.
_build_record = cardholder_builder([field.name for field in fields(CardholderRecord)][1:])


class RecordSource(Protocol):
    """What a worker can open by itself: picklable, and ``open()`` yields the records."""

    def open(self) -> Iterator[CardholderRecord | RejectedRecord]: ...


class ReadAhead:
    """The records of ``source``, read by a worker process that starts at ``start()`` or at the first record.
    Use it as a context manager (or close it): leaving stops the worker, whether every record was read or the
    sync stopped early."""

    def __init__(self, source: RecordSource, *, chunk: int = CHUNK, stall_seconds: float | None = None,
                 flush_seconds: float = FLUSH_SECONDS):
        self._source = source
        self._chunk = chunk
        # How long the engine waits for the worker's next message before it stops the reading (None: for ever).
        # A connector is a plug-in: one without timeouts of its own, on a source that never answers, held the
        # sync, and the source's lock, for ever.
        self._stall_seconds = stall_seconds
        self._flush_seconds = flush_seconds
        self._worker: multiprocessing.process.BaseProcess | None = None
        self._receiving: Connection | None = None
        self._receiver: threading.Thread | None = None
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=AHEAD)
        # How many chunks the receiver may hold: AHEAD until the engine's first take, then less (see _took).
        self._room = threading.Condition()
        self._limit = AHEAD
        self._closing = threading.Event()
        self._iterated = False

    def start(self, *, digest_with: KeyedHashes | None = None) -> None:
        """Start reading now, if not started yet. ``digest_with``: the worker also computes each cardholder
        record's content hash (``adapter.record_digests``), which ``digested()`` hands over beside it. Only
        the blind-index key crosses to the worker, never an encryption key: it reads, it never decrypts."""
        if self._worker is not None or self._closing.is_set():
            return
        digest_key = digest_with.key_material() if digest_with is not None else None
        # forkserver, as the sealer's workers: the scheduler runs syncs on several threads, and a fork
        # would copy locks other threads hold.
        context = multiprocessing.get_context("forkserver")
        receiving, sending = context.Pipe(duplex=False)
        worker = context.Process(target=_read_in_worker,
                                 args=(self._source, sending, self._chunk, self._flush_seconds, _log_level(),
                                       digest_key),
                                 name="stadspas-read-ahead", daemon=True)
        try:
            worker.start()
        except BaseException:
            # Nothing was started (no process to join in close()): the error that stopped it is the one to see.
            receiving.close()
            raise
        finally:
            sending.close()  # the worker holds the only sending end: its exit ends the pipe
        self._worker, self._receiving = worker, receiving
        receiver = threading.Thread(target=self._receive, name="stadspas-read-ahead", daemon=True)
        receiver.start()  # should it fail (no thread to be had), close() still stops the worker, and joins no thread
        self._receiver = receiver

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[CardholderRecord | RejectedRecord]:
        for record, _content_hash in self.digested():
            yield record

    def digested(self) -> Iterator[tuple[CardholderRecord | RejectedRecord, str | None]]:
        """Each record with its content hash: computed by the worker when ``start`` was given the keyed
        hashes, else None (and always None for a rejected record)."""
        if self._iterated:
            raise RuntimeError("the records of a read-ahead can be read once")
        self._iterated = True
        self.start()
        try:
            while True:
                try:
                    message = self._chunks.get(timeout=self._stall_seconds)
                except queue.Empty:
                    raise SourceReadingStalled(self._stall_seconds) from None  # the finally stops the worker
                self._took()
                if message is None:
                    raise SourceReadingStopped(self._exit_code())
                if message is _CLOSED:
                    raise RuntimeError("the reading of the source was closed before its end; nothing was written")
                kind, payload = pickle.loads(message)
                if kind == _RECORDS:
                    for row in payload:
                        if type(row) is not tuple:
                            yield row, None
                        else:
                            # A cardholder's fields, then its content hash when the worker computed it.
                            yield (_build_record(row[0], row[1:_FIELDS]),
                                   row[_FIELDS] if len(row) > _FIELDS else None)
                elif kind == _LOG:
                    logging.getLogger(payload.name).handle(payload)
                elif kind == _FAILED:
                    error, remote_traceback = payload
                    raise _as_raised(error) from _RemoteTraceback(remote_traceback)
                else:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker. Log lines it sent and nobody took yet are logged now; a reader still waiting
        (on another thread) is told the reading was closed."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._worker is not None:
            if self._worker.is_alive():
                self._worker.terminate()
            self._worker.join()
        if self._receiver is not None:
            self._receiver.join()  # it sees the pipe end (or the closing) within moments
        if self._receiving is not None:
            self._receiving.close()
        while True:
            try:
                message = self._chunks.get_nowait()
            except queue.Empty:
                break
            if message is not None and message is not _CLOSED:
                kind, payload = pickle.loads(message)
                if kind == _LOG:
                    logging.getLogger(payload.name).handle(payload)
        self._chunks.put_nowait(_CLOSED)

    def _receive(self) -> None:
        """Move the worker's messages from the pipe to the queue; None when the pipe ends."""
        assert self._receiving is not None
        message: bytes | None = b""
        try:
            while message is not None and not self._closing.is_set():
                try:
                    message = self._receiving.recv_bytes()
                except (EOFError, OSError):
                    message = None
                self._put(message)
        finally:
            if message is not None:  # ended by an unexpected error: the reader must not wait for ever
                self._put(None)

    def _took(self) -> None:
        with self._room:
            # One less each take, and never more than it left plus the one it took: while the worker is the
            # faster the store falls by one a take; while the engine is, it falls as fast as the engine eats.
            self._limit = max(STEADY, min(self._limit - 1, self._chunks.qsize() + 1))
            self._room.notify()

    def _put(self, message: bytes | None) -> None:
        with self._room:
            # The timeout only bounds how late a close() is noticed.
            while not self._room.wait_for(lambda: self._chunks.qsize() < self._limit, timeout=0.1):
                if self._closing.is_set():
                    return
            if not self._closing.is_set():
                # Room is certain: this thread alone puts, and the limit never exceeds the queue's size.
                self._chunks.put_nowait(message)

    def _exit_code(self) -> int | None:
        """The worker's exit code once it has ended (it is ending: its end of the pipe closed)."""
        assert self._worker is not None
        self._worker.join(timeout=30)
        if self._worker.is_alive():
            self._worker.terminate()
            self._worker.join()
        return self._worker.exitcode


class SourceReadingStopped(RuntimeError):
    """The reading worker ended without saying why (killed, or out of memory)."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the process reading the source stopped unexpectedly (exit code {exitcode}); nothing was "
                         "written. Check the machine's memory and the system log, then run the sync again")


class SourceReadingStalled(RuntimeError):
    """The reading worker sent nothing (no record, no log line, no end) for the stall deadline."""

    def __init__(self, stall_seconds: float | None):
        super().__init__(f"the source sent nothing for {stall_seconds:g} s, so its reading was stopped; nothing was "
                         "written. Check the source ('connectors check'), then run the sync again; if the source is "
                         "that slow and still answering, raise sync.read_stall_minutes")


class _RemoteTraceback(Exception):
    """Where the error happened in the reading worker (its traceback, as text)."""

    def __str__(self) -> str:
        return str(self.args[0])


class _LogToPipe(logging.Handler):
    """The worker's log records go to the engine's process redacted: message and arguments formatted into
    one text, the exception into text, ``extra`` values into text or dropped (``RedactionFilter``)."""

    def __init__(self, send: Any):
        super().__init__()
        self._send = send
        self.addFilter(RedactionFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send((_LOG, record))
        except Exception:  # noqa: BLE001 - a value that does not pickle: send the redacted line alone
            plain = logging.LogRecord(record.name, record.levelno, record.pathname, record.lineno, record.msg,
                                      None, None, record.funcName)
            plain.exc_text, plain._adapter_redacted = record.exc_text, True  # type: ignore[attr-defined]
            self._send((_LOG, plain))


def _read_in_worker(source: RecordSource, sending: Connection, chunk_size: int, flush_seconds: float, level: int,
                    digest_key: str | None) -> None:
    def send(message: tuple) -> None:
        try:
            sending.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _NoOneListens from exc

    root = logging.getLogger()
    root.handlers[:] = [_LogToPipe(send)]
    root.setLevel(level)
    # Nothing of the worker's own goes to its stderr, unredacted: not a log record that fails (logging would
    # print it with its arguments), nor a warning (it goes through the redacting handler instead).
    logging.raiseExceptions = False
    logging.captureWarnings(True)
    hashes = KeyedHashes(digest_key) if digest_key is not None else None
    try:
        chunk: list = []
        last_sent = time.monotonic()
        for record in source.open():
            if type(record) is not CardholderRecord:
                chunk.append(record)
            elif hashes is None:
                chunk.append(_record_fields(record))
            else:
                chunk.append((*_record_fields(record), holder_content_hash(hashes, record)))
            if len(chunk) >= chunk_size or time.monotonic() - last_sent >= flush_seconds:
                send((_RECORDS, chunk))
                chunk = []
                last_sent = time.monotonic()
        send((_RECORDS, chunk))
        send((_DONE, None))
    except _NoOneListens:
        # The sync that started this worker is gone (killed, by the OOM killer say): there is no one left to tell,
        # and what multiprocessing would print instead is a traceback on stderr, outside every redacting handler.
        return
    except BaseException as exc:  # noqa: BLE001 - every failure is the engine's to report
        with contextlib.suppress(_NoOneListens):
            send((_FAILED, (_crossable(exc), traceback.format_exc())))
    finally:
        sending.close()


class _NoOneListens(Exception):
    """The pipe to the sync broke as this worker sent on it. Told apart from a source's own broken connection (a
    ConnectionResetError of a server that hung up), which is the run's failure to report, not a reason to end
    without a word: the sync then said 'stopped unexpectedly, check the machine's memory'."""


def _crossable(exc: BaseException) -> BaseException | tuple[str, str]:
    """``exc`` itself when it survives pickling; else its class name and text (see ``_as_raised``). A
    KeyboardInterrupt or SystemExit of the worker's crosses by name too: raised here as itself it would
    interrupt or end this process (the scheduler, the sync command) instead of failing the one run."""
    if not isinstance(exc, Exception):
        return type(exc).__name__, str(exc)
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return type(exc).__name__, str(exc)


class SourceReadingFailed(Exception):
    """An error of the reading worker that could not cross as itself: a class of its name stands in."""


def _as_raised(error: BaseException | tuple[str, str]) -> BaseException:
    if isinstance(error, BaseException):
        return error
    # Named as the original, so the run's recorded reason reads as it would have ("failed: <class>: <text>").
    name, text = error
    return type(name, (SourceReadingFailed,), {})(text)


def _log_level() -> int:
    return logging.getLogger().getEffectiveLevel()
