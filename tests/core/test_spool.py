"""The spool a sync keeps its planned rows in: in order, re-readable, encrypted, gone when closed."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from adapter.spool import Spool


def _raw_bytes(spool: Spool) -> bytes:
    spool._write_pending()  # what is still in hand goes to the file, as reading would do
    assert spool._file is not None
    return os.pread(spool._file.fileno(), 1 << 24, 0)


def test_rows_come_back_in_order_across_chunks_as_often_as_asked():
    rows = [(f"key-{number}", number, number % 2 == 0, None) for number in range(1, 2_501)]
    with Spool(chunk_rows=100) as spool:
        spool.extend(rows)
        assert len(spool) == 2_500
        assert list(spool) == rows
        assert list(spool) == rows  # a second reading, as the apply makes


def test_appending_while_reading_shows_a_reading_the_rows_from_before_it_began():
    with Spool(chunk_rows=3) as spool:
        spool.extend([(1,), (2,), (3,), (4,)])
        seen = []
        for row in spool:
            seen.append(row)
            spool.append((row[0] + 10,))
        assert seen == [(1,), (2,), (3,), (4,)]
        assert list(spool) == [(1,), (2,), (3,), (4,), (11,), (12,), (13,), (14,)]


def test_an_empty_spool_has_no_rows_and_no_file():
    with Spool() as spool:
        assert not spool and len(spool) == 0 and list(spool) == []
        assert spool._file is None


def test_the_file_holds_no_row_in_plain_text():
    pass_number = "6012345678901234"
    with Spool(chunk_rows=10) as spool:
        spool.extend((pass_number, "H-000017", "2019-03-04") for _ in range(25))
        raw = _raw_bytes(spool)
        assert len(raw) > 25 * len(pass_number)  # the rows are in there...
        for plain in (pass_number.encode(), b"H-000017", b"2019-03-04", pass_number[-8:].encode()):
            assert plain not in raw  # ...but not readable


def test_a_changed_file_is_refused_not_read():
    with Spool(chunk_rows=10) as spool:
        spool.extend((number,) for number in range(30))
        raw = bytearray(_raw_bytes(spool))
        raw[len(raw) // 2] ^= 0x01
        os.pwrite(spool._file.fileno(), bytes(raw), 0)
        with pytest.raises(InvalidTag):
            list(spool)


def test_another_spools_key_cannot_read_it():
    with Spool(chunk_rows=10) as first, Spool(chunk_rows=10) as second:
        first.extend((number,) for number in range(10))
        second.extend((number,) for number in range(10))
        assert _raw_bytes(first) != _raw_bytes(second)  # same rows, other key
        offset, length = first._chunks[0]
        with pytest.raises(InvalidTag):
            second._aead.decrypt(bytes(12), _raw_bytes(first)[offset:offset + length], None)


def test_each_chunk_has_its_own_nonce():
    """The same rows in two chunks encrypt differently: under one key, a nonce used twice would give away
    what the two chunks have in common."""
    with Spool(chunk_rows=1) as spool:
        spool.extend([("6012345678901234",), ("6012345678901234",)])
        raw = _raw_bytes(spool)
        (first_offset, length), (second_offset, second_length) = spool._chunks
        assert length == second_length
        assert raw[first_offset:first_offset + length] != raw[second_offset:second_offset + length]


def test_chunks_swapped_on_disk_are_refused():
    """A chunk is bound to its place: two chunks of the same length swapped in the file do not read back."""
    with Spool(chunk_rows=1) as spool:
        spool.extend([("A-1",), ("B-2",)])
        raw = _raw_bytes(spool)
        (_, length), _ = spool._chunks
        os.pwrite(spool._file.fileno(), raw[length:2 * length] + raw[:length], 0)
        with pytest.raises(InvalidTag):
            list(spool)


def test_a_failed_write_closes_the_spool_for_good(monkeypatch):
    """A full disk must not leave a spool that reads back fewer rows than it counts, nor one that a retry
    could write again under a nonce already used."""
    import adapter.spool as spool_module

    spool = Spool(chunk_rows=2)
    spool.append((1,))
    with monkeypatch.context() as patched:
        patched.setattr(spool_module.os, "pwrite", lambda *_args: (_ for _ in ()).throw(OSError(28, "No space")))
        with pytest.raises(OSError):
            spool.append((2,))
    with pytest.raises(RuntimeError, match="write to the spool failed"):
        spool.append((3,))
    with pytest.raises(RuntimeError, match="write to the spool failed"):
        list(spool)
    assert spool._file is None and spool._aead is None


def test_closing_deletes_the_rows():
    spool = Spool(chunk_rows=2)
    spool.extend((number,) for number in range(5))
    list(spool)
    descriptor = spool._file.fileno()
    spool.close()
    with pytest.raises(OSError):
        os.fstat(descriptor)  # the unnamed file's only descriptor is closed: the file is gone
    with pytest.raises(RuntimeError, match="closed"):
        list(spool)
    with pytest.raises(RuntimeError, match="closed"):
        spool.append((6,))  # refused at once, not when a chunk would fill
    assert len(spool) == 5 and spool._aead is None  # the key is forgotten with the file
