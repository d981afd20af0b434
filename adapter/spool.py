"""Rows a sync writes once and reads back in order, kept on disk instead of in memory.

A first sync of a city plans a write for every line of the export before the
mass-change guard may judge the run; held as Python objects, those plans were
most of the sync's memory (several hundred bytes a row, a gigabyte at a million
rows). A ``Spool`` keeps them in an unnamed temporary file instead, in chunks,
and hands them back in the order they came, as often as asked.

The rows name children (their cardholder ids and pass numbers, a birth date), so
each chunk is encrypted and authenticated (AES-GCM) under a key made for this
spool alone and held only in this object: the file outlives nothing, and what a
crash leaves of it in ``TMPDIR`` (on a filesystem that keeps unnamed files) can
be read by no one. The authentication is also why the chunks may be pickled:
nothing but this object can have written what it reads back.

Rows are tuples of plain values (str, int, bool, None): those pickle and unpickle
in C, about a third of a microsecond a row. Callers turn dates into ordinals and
enums into their values (``adapter.sync_plan`` does).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK_ROWS = 2_000


class Spool:
    """An append-only sequence of tuples on disk; iterate it to read them back, in order, any number of times.

    Appending while iterating is allowed: an iteration sees the rows appended before its first row was asked
    for. Use it as a context manager, or call ``close()``: that deletes the file and forgets the key. A write
    that fails (a full disk) closes the spool too: it raises, and so does every later use.
    """

    def __init__(self, *, prefix: str = "stadspas-spool-", chunk_rows: int = CHUNK_ROWS):
        self._prefix = prefix
        self._chunk_rows = chunk_rows
        self._aead: AESGCM | None = AESGCM(AESGCM.generate_key(bit_length=256))
        self._pending: list[tuple] = []
        self._file: IO[bytes] | None = None
        # (offset, length) of each chunk in the file, in the order written; its place in this list is its nonce.
        self._chunks: list[tuple[int, int]] = []
        self._end = 0
        self._rows = 0
        # Why the spool can no longer be used (closed, or a write failed and rows may be missing), or None.
        self._unusable: str | None = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._rows

    def append(self, row: tuple) -> None:
        self._check_usable()
        self._pending.append(row)
        self._rows += 1
        if len(self._pending) >= self._chunk_rows:
            self._write_pending()

    def extend(self, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.append(row)

    def __iter__(self) -> Iterator[tuple]:
        return self._read_all()

    def close(self) -> None:
        self._unusable = self._unusable or "the spool was closed; its rows are gone"
        self._aead = None  # the key goes with the file
        self._pending = []
        self._chunks = []
        if self._file is not None:
            self._file.close()  # an unnamed temporary file: closing it is deleting it
            self._file = None

    # ------------------------------------------------------------ internals

    def _read_all(self) -> Iterator[tuple]:
        self._check_usable()
        self._write_pending()
        # The chunks written when the reading starts: rows appended later go to new chunks, unseen here.
        for nonce, (offset, length) in enumerate(list(self._chunks)):
            self._check_usable()
            assert self._file is not None and self._aead is not None
            sealed = os.pread(self._file.fileno(), length, offset)
            plain = self._aead.decrypt(chunk_nonce(nonce), sealed, None)
            yield from pickle.loads(plain)  # noqa: S301 (ours: authenticated)

    def _write_pending(self) -> None:
        if not self._pending:
            return
        self._check_usable()
        assert self._aead is not None
        # The chunk's place is its nonce. A failed write closes the spool for good (below), so no place, and
        # no nonce, is ever used twice under the key.
        nonce = len(self._chunks)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix=self._prefix, buffering=0)
            sealed = self._aead.encrypt(chunk_nonce(nonce),
                                        pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL), None)
            write_at(self._file.fileno(), sealed, self._end)
        except BaseException:
            # Rows that never reached the file: the spool would read back fewer than it counts. No reader may
            # take such a spool for whole, and no retry may reuse it.
            self.close()
            self._unusable = (f"a write to the spool failed (is {tempfile.gettempdir()} full?); its rows are "
                              "incomplete and it was closed")
            raise
        self._pending = []
        self._chunks.append((self._end, len(sealed)))
        self._end += len(sealed)

    def _check_usable(self) -> None:
        if self._unusable is not None:
            raise RuntimeError(self._unusable)


def chunk_nonce(chunk_number: int) -> bytes:
    """A chunk's AES-GCM nonce: its number. Each key (a spool's, a sealer's backlog's) is its owner's alone,
    which numbers its chunks once each, so no nonce repeats under a key."""
    return chunk_number.to_bytes(12, "big")


def write_at(descriptor: int, blob: bytes, offset: int) -> None:
    """Write all of ``blob`` at ``offset`` of a temporary file, or raise (a full disk)."""
    written = os.pwrite(descriptor, blob, offset)
    if written != len(blob):
        raise OSError(f"a temporary file took {written} of {len(blob)} bytes (is {tempfile.gettempdir()} full?)")
