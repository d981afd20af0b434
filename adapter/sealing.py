"""Sealing the personal fields of new and changed cardholders while a sync still reads.

The planner hands every record whose personal fields must be (re)written to a
``Sealer`` the moment it judges it, and keeps no plaintext of it. The sealer
encrypts in chunks: in this process while a run is small, on the machine's other
cores once it is large (a first sync of a city). Sealed chunks go, in the order
the records came, to a spool file that holds encrypted tokens, blind indexes and
the child flag only; the apply step reads them back in that same order.

Why: one ``MultiFernet`` token per cardholder is the largest single cost of a
first sync. Done while the export is still being parsed, it runs beside the
parsing instead of after it; and the process never holds every child's name,
BSN and birth date at once, only the few chunks in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO

from adapter.crypto import Vault
from adapter.personal import PersonalFields, personal_values, seal
from adapter.records import CardholderRecord

# The columns each sealed record fills, in the order the sealer hands them back.
SEALED_COLUMNS = ("personal_encrypted", "bsn_index", "is_child")
SealedColumns = tuple[str | None, str | None, bool | None]

# Below this many records a run encrypts in its own process: starting workers costs more than it saves.
PARALLEL_FROM = 20_000
CHUNK = 2_000


class Sealer:
    """Seals records in the order they are added; ``sealed()`` then yields their columns in that order.

    Use it as a context manager: leaving it stops the workers and deletes the spool, whether the run
    was applied, refused or failed.
    """

    def __init__(self, vault: Vault, *, parallel_from: int | None = None, chunk: int | None = None,
                 workers: int | None = None):
        self._vault = vault
        self._parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
        self._chunk_size = CHUNK if chunk is None else chunk
        # The reading process keeps one core busy itself; the sealing takes the others.
        self._workers = workers if workers is not None else min((os.cpu_count() or 1) - 1, 8)
        # Records in hand, as tuples (see _personal_tuple): plain text until sealed.
        self._chunk: list[tuple] = []
        self._added = 0
        self._spooled = 0
        self._pool: ProcessPoolExecutor | None = None
        # Chunks handed to the workers, oldest first; written to the spool in this order as they finish.
        self._pending: deque[Future[list[SealedColumns]]] = deque()
        self._spool: IO[bytes] | None = None
        self._read = False

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        """Records added and not sealed yet: the plaintext this process still holds."""
        return self._added - self._spooled

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
        """Seal what is still in hand and wait for the workers: no plaintext record is held after this."""
        if self._chunk:
            self._hand_over()
        while self._pending:
            self._write(self._pending.popleft().result())
        self._stop_workers()

    def sealed(self) -> Iterator[SealedColumns]:
        """Every added record's ``SEALED_COLUMNS``, in the order added. Read once."""
        if self._read:
            raise RuntimeError("the sealed columns can be read once")
        self._read = True
        self.finish()
        if self._spool is None:
            return
        self._spool.flush()
        self._spool.seek(0)
        while True:
            try:
                chunk: list[SealedColumns] = pickle.load(self._spool)
            except EOFError:
                return
            yield from chunk

    def close(self) -> None:
        self._chunk = []
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        try:
            self._stop_workers()
        finally:
            if self._spool is not None:
                self._spool.close()  # an unnamed temporary file: closing it is deleting it
                self._spool = None

    # ------------------------------------------------------------ internals

    def _hand_over(self) -> None:
        chunk, self._chunk = self._chunk, []
        if self._pool is None and (self._added < self._parallel_from or self._workers < 1):
            self._write(_seal_tuples(self._vault, chunk))
            return
        if self._pool is None:
            # forkserver, not fork: the scheduler runs syncs and housekeeping on several threads, and a
            # fork copies any lock another thread holds (inside OpenSSL, say) locked for good, which would
            # hang the worker and the sync with it. The keys reach the workers through their pipe only.
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=_set_worker_vault, initargs=self._vault.key_material())
        # Plain tuples cross to the worker: pickling a frozen dataclass runs Python code per record, in
        # this process, beside the reading.
        self._pending.append(self._pool.submit(_seal_in_worker, chunk))
        # Finished chunks leave memory as soon as they are done; beyond a few in flight the reading waits,
        # so plaintext records never pile up ahead of the workers.
        while self._pending and (self._pending[0].done() or len(self._pending) > 2 * self._workers):
            self._write(self._pending.popleft().result())

    def _write(self, columns: list[SealedColumns]) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="stadspas-sealed-")
        pickle.dump(columns, self._spool, protocol=pickle.HIGHEST_PROTOCOL)
        self._spooled += len(columns)

    def _stop_workers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _personal_tuple(record: CardholderRecord, bsn_index: str | None) -> tuple:
    """The record's personal fields (``personal_values``), its BSN index and its child flag."""
    return (personal_values(record), bsn_index, record.is_child)


def _seal_tuples(vault: Vault, personal: list[tuple]) -> list[SealedColumns]:
    return [(seal(vault, PersonalFields(*values)), bsn_index, is_child) for values, bsn_index, is_child in personal]


_worker_vault: Vault | None = None


def _set_worker_vault(encryption_keys: list[str], blind_index_key: str) -> None:
    global _worker_vault
    _worker_vault = Vault(encryption_keys, blind_index_key)


def _seal_in_worker(personal: list[tuple]) -> list[SealedColumns]:
    assert _worker_vault is not None
    return _seal_tuples(_worker_vault, personal)
