"""Sealing the personal fields of new and changed cardholders while a sync still reads.

The planner hands every record whose personal fields must be (re)written to a
``Sealer`` the moment it judges it, and keeps no plaintext of it. The sealer
encrypts in chunks: in this process while a run is small, in worker processes
on the machine's other cores once it is large (a first sync of a city). What is
sealed (encrypted tokens, blind indexes and the child flag only) goes to files
on disk, and the apply step reads it back in the order the records came.

Why: one ``MultiFernet`` token per cardholder is the largest single cost of a
first sync. Done while the export is still being parsed, it runs beside the
parsing instead of after it; and the process never holds every child's name,
BSN and birth date at once, only the few chunks in flight.

Each worker is told of its chunks through a pipe of its own, straight from the
planner's thread, and writes what it seals to a file this process made for it,
saying only where each chunk went. A ``ProcessPoolExecutor`` did this before,
with two threads of its own in this process pickling and unpickling every chunk:
on a first sync of 200,000 rows they took about a second of CPU, and the
planner's thread waited for the interpreter lock behind them.

The workers run at the lowest priority (``WORKER_NICENESS``) and may fall
behind: a chunk waits for its worker in a backlog file, encrypted (AES-GCM)
under a key made for this sealer alone, never in memory. On a machine whose
cores the reading and the planning keep busy, the sealing then takes what they
leave, and catches up while the sync plans and writes the other tables; the
sync writes the cardholders, which need the sealed columns, as late as it can
(``adapter.sync``). Measured on a first sync of 200,000 rows on two cores:
the reading ended about 1.5 s sooner with the sealing out of its way.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapter.crypto import Vault
from adapter.personal import personal_values, seal_values
from adapter.records import CardholderRecord
from adapter.spool import chunk_nonce, write_at

# The columns each sealed record fills, in the order the sealer hands them back.
SEALED_COLUMNS = ("personal_encrypted", "bsn_index", "is_child")
SealedColumns = tuple[str | None, str | None, bool | None]

# Below this many records a run encrypts in its own process: starting workers costs more than it saves.
PARALLEL_FROM = 20_000
CHUNK = 2_000
# A worker's priority (nice(2)): below the reading's and the planning's, whose work the sync waits for first.
WORKER_NICENESS = 19
_SEALED, _FAILED = "sealed", "failed"
_OWN_FILE = 0  # self._files[0]: what this process sealed itself; worker n writes to self._files[n + 1]


class SealingStopped(RuntimeError):
    """A sealing worker ended without saying why (killed, or out of memory)."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the process sealing personal data stopped unexpectedly (exit code {exitcode}); nothing "
                         "was written. Check the machine's memory and the system log, then run the sync again")


class SealingFailed(RuntimeError):
    """Sealing a chunk failed in a worker. Only the error's type crosses back: its text, or what it holds (a
    ``UnicodeError`` holds the whole string it failed on), may be a child's name or BSN."""

    def __init__(self, error_type: str):
        super().__init__(f"encrypting personal data failed in a worker process ({error_type}); nothing was "
                         "written. Check the export for malformed names or dates, then run the sync again")
        self.error_type = error_type

    def __reduce__(self) -> tuple:
        return (SealingFailed, (self.error_type,))  # it crosses the worker's pipe


class Sealer:
    """Seals records in the order they are added; ``sealed()`` then yields their columns in that order.

    Use it as a context manager: leaving it stops the workers and deletes the sealed files, whether the run
    was applied, refused or failed.
    """

    def __init__(self, vault: Vault, *, parallel_from: int | None = None, chunk: int | None = None,
                 workers: int | None = None):
        self._vault = vault
        self._parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
        self._chunk_size = CHUNK if chunk is None else chunk
        # The reading process keeps one core busy itself; the sealing takes the others.
        self._worker_count = workers if workers is not None else min((os.cpu_count() or 1) - 1, 8)
        # Records in hand, as tuples (see _personal_tuple): plain text until sealed.
        self._chunk: list[tuple] = []
        self._added = 0
        self._sealed = 0
        self._workers: list[_Worker] = []
        # Where each chunk's sealed columns are, by its number (the order added): (file, offset, length).
        self._where: list[tuple[int, int, int] | None] = []
        self._files: list[IO[bytes]] = []
        self._own_end = 0
        # Chunks waiting for a worker, encrypted under a key of this sealer's alone, each under its number.
        self._backlog: IO[bytes] | None = None
        self._backlog_key = AESGCM.generate_key(bit_length=256)
        self._backlog_cipher: AESGCM | None = AESGCM(self._backlog_key)
        self._backlog_end = 0
        self._read = False

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        """Records whose plaintext this process holds: the chunk not handed over yet. (A worker holds the one
        it seals; the rest wait in the backlog, encrypted.)"""
        return len(self._chunk)

    @property
    def unsealed(self) -> int:
        """Records added and not sealed yet, as far as this process has heard."""
        return self._added - self._sealed

    def add(self, record: CardholderRecord, bsn_index: str | None) -> None:
        """Seal ``record``'s personal fields (now, or soon on another core); it is not kept beyond that.
        ``bsn_index``: its BSN's blind index, which the caller has computed already (None without a BSN)."""
        if self._read:
            raise RuntimeError("the sealed columns were read already: add every record before reading them")
        self._chunk.append(_personal_tuple(record, bsn_index))
        self._added += 1
        if len(self._chunk) >= self._chunk_size:
            self._hand_over()

    def finish(self) -> None:
        """No more records: what is still in hand is sealed or goes to the backlog, so this process holds no
        plaintext record after this. The workers go on with the backlog; ``sealed()`` waits for them."""
        if self._chunk:
            self._hand_over()

    def sealed(self) -> Iterator[SealedColumns]:
        """Every added record's ``SEALED_COLUMNS``, in the order added. Read once."""
        if self._read:
            raise RuntimeError("the sealed columns can be read once")
        self._read = True
        self.finish()
        for number in range(len(self._where)):
            where = self._where[number]
            if where is None:  # a worker's, not sealed yet: wait for it
                worker = self._workers[number % len(self._workers)]
                while self._where[number] is None:
                    self._note(worker, worker.report())
                where = self._where[number]
            assert where is not None
            file_number, offset, length = where
            yield from pickle.loads(os.pread(self._files[file_number].fileno(), length, offset))  # noqa: S301 (ours)

    def close(self) -> None:
        self._chunk = []
        try:
            self._stop_workers()
        finally:
            for sealed_file in (*self._files, *([self._backlog] if self._backlog is not None else [])):
                sealed_file.close()  # unnamed temporary files: closing them is deleting them
            self._files, self._backlog = [], None
            self._backlog_key, self._backlog_cipher = b"", None  # the key goes with the backlog

    # ------------------------------------------------------------ internals

    def _hand_over(self) -> None:
        chunk, self._chunk = self._chunk, []
        number = len(self._where)
        self._where.append(None)
        if not self._workers and (self._added < self._parallel_from or self._worker_count < 1):
            self._keep(number, _seal_tuples(self._vault, chunk))
            return
        if not self._workers:
            self._start_workers()
        worker = self._workers[number % len(self._workers)]
        assert self._backlog_cipher is not None, "the sealer was closed"
        plain = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        blob = self._backlog_cipher.encrypt(chunk_nonce(number), plain, None)
        assert self._backlog is not None
        write_at(self._backlog.fileno(), blob, self._backlog_end)
        worker.hand(number, self._backlog_end, len(blob))
        self._backlog_end += len(blob)
        for other in self._workers:  # reports already in: taken now, so a worker's pipe never fills with them
            while other.has_report():
                self._note(other, other.report())

    def _keep(self, number: int, columns: list[SealedColumns]) -> None:
        """Write columns sealed here to this process's own file."""
        if not self._files:
            self._files.append(_sealed_file())
        blob = pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL)
        write_at(self._files[_OWN_FILE].fileno(), blob, self._own_end)
        self._where[number] = (_OWN_FILE, self._own_end, len(blob))
        self._own_end += len(blob)
        self._sealed += len(columns)

    def _note(self, worker: _Worker, report: tuple) -> None:
        kind, number, *details = report
        if kind == _FAILED:
            raise details[0]
        offset, length, count = details
        self._where[number] = (worker.file_number, offset, length)
        self._sealed += count

    def _start_workers(self) -> None:
        if not self._files:
            self._files.append(_sealed_file())
        self._backlog = tempfile.TemporaryFile(prefix="stadspas-backlog-")
        # forkserver, not fork: the scheduler runs syncs and housekeeping on several threads, and a fork
        # copies any lock another thread holds (inside OpenSSL, say) locked for good, which would hang the
        # worker and the sync with it. The keys reach the workers through their pipe only.
        context = multiprocessing.get_context("forkserver")
        for _ in range(self._worker_count):
            self._files.append(_sealed_file())
            self._workers.append(_Worker(context, self._vault, self._backlog, self._backlog_key, self._files[-1],
                                         len(self._files) - 1))

    def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:  # all told first, so that they end together
            worker.close()
        for worker in workers:
            worker.stop()


class _Worker:
    """One sealing process: told through its pipe where each of its chunks is in the ``backlog``, it writes
    their sealed columns to ``results`` (files of this process's, handed over by descriptor) and reports where
    each went."""

    def __init__(self, context: Any, vault: Vault, backlog: IO[bytes], backlog_key: bytes, results: IO[bytes],
                 file_number: int):
        self.file_number = file_number
        self._connection, theirs = context.Pipe(duplex=True)
        self._process = context.Process(target=_seal_in_worker,
                                        args=(theirs, backlog_key, *vault.key_material()),
                                        name="stadspas-sealer", daemon=True)
        try:
            self._process.start()
        except BaseException:
            self._connection.close()
            raise
        finally:
            theirs.close()
        try:
            for descriptor in (backlog.fileno(), results.fileno()):
                send_handle(self._connection, descriptor, self._process.pid)
        except BaseException:
            self.close()
            self.stop()
            raise

    def hand(self, number: int, offset: int, length: int) -> None:
        """Chunk ``number`` waits at ``offset`` in the backlog, ``length`` bytes."""
        try:
            self._connection.send((number, offset, length))
        except OSError:
            # A worker that failed says so before it ends: that report, not its end, is what to raise.
            while self._connection.poll():
                report = self.report()
                if report[0] == _FAILED:
                    raise report[2] from None
            raise SealingStopped(self._exitcode()) from None

    def has_report(self) -> bool:
        return self._connection.poll()

    def report(self) -> tuple:
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            raise SealingStopped(self._exitcode()) from None

    def close(self) -> None:
        """Close the pipe: the worker ends once it is done with the chunk in hand."""
        self._connection.close()

    def stop(self) -> None:
        """Wait for the worker to end (after ``close()``); one still sealing after a moment is killed."""
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def _exitcode(self) -> int | None:
        self._process.join(timeout=1)
        return self._process.exitcode


def _personal_tuple(record: CardholderRecord, bsn_index: str | None) -> tuple:
    """The record's personal fields (``personal_values``), its BSN index and its child flag."""
    return (personal_values(record), bsn_index, record.is_child)


def _seal_tuples(vault: Vault, personal: list[tuple]) -> list[SealedColumns]:
    return [(seal_values(vault, values), bsn_index, is_child) for values, bsn_index, is_child in personal]


def _sealed_file() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="stadspas-sealed-")


def _seal_in_worker(connection: Connection, backlog_key: bytes, encryption_keys: list[str],
                    blind_index_key: str) -> None:
    """A worker's life: seal each chunk it is told of, write it to the file handed over, say where; end when
    the pipe closes. An error goes back as the report of its chunk, and ends the worker."""
    os.nice(WORKER_NICENESS)
    backlog, results = recv_handle(connection), recv_handle(connection)
    opened = AESGCM(backlog_key)
    vault = Vault(encryption_keys, blind_index_key)
    end = 0
    while True:
        try:
            number, offset, length = connection.recv()
        except (EOFError, OSError):
            return
        try:
            sealed = os.pread(backlog, length, offset)
            chunk = pickle.loads(opened.decrypt(chunk_nonce(number), sealed, None))  # noqa: S301 (authenticated: ours)
            columns = _seal_tuples(vault, chunk)
            blob = pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL)
            write_at(results, blob, end)
            report: tuple = (_SEALED, number, end, len(blob), len(columns))
        except Exception as exc:  # noqa: BLE001 - whatever it is, the sync must hear of it and stop
            report = (_FAILED, number, SealingFailed(type(exc).__name__))
        try:
            connection.send(report)
        except OSError:
            return  # the sync let us go (it stopped early): nobody is left to tell
        if report[0] == _FAILED:
            return
        end += len(blob)
