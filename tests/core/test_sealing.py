"""The sealer: personal fields encrypted in the order handed over, inline or on other cores, kept on
disk encrypted, with a bounded number of plaintext records in flight."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from adapter import sealing
from adapter.crypto import Vault
from adapter.personal import PersonalFields, open_sealed
from adapter.records import CardholderRecord
from adapter.sealing import Sealer
from tests.sync.records import TEST_BSNS, household_records

SURNAME = "Ëlsevier-Zijlstra"


def _records(count: int) -> list[CardholderRecord]:
    """Every one with a BSN (the test range has eleven, so they repeat), a birth date and its own surname."""
    return [dataclasses.replace(record, bsn=TEST_BSNS[index % len(TEST_BSNS)], surname=f"{SURNAME}{index}")
            for index, record in enumerate(household_records(count)[:count])]


def _index(record: CardholderRecord) -> str:
    return f"index of {record.cardholder_id}"  # the planner's blind index, handed over as it is


def _opened(vault: Vault, columns) -> list[tuple]:
    return [(open_sealed(vault, token), index, is_child) for token, index, is_child in columns]


def _expected(vault: Vault, records: list[CardholderRecord]) -> list[tuple]:
    return [(PersonalFields.of(record), _index(record), record.is_child) for record in records]


@pytest.mark.parametrize("parallel_from, workers", [(10_000, 1), (0, 1), (0, 2), (8, 2)],
                         ids=["inline", "one worker", "two workers", "inline, then workers"])
def test_sealed_columns_come_back_in_the_order_the_records_were_added(vault, parallel_from, workers):
    records = _records(23)
    with Sealer(vault, parallel_from=parallel_from, chunk=3, workers=workers) as sealer:
        for record in records:
            sealer.add(record, _index(record))
        assert _opened(vault, sealer.sealed()) == _expected(vault, records)


def test_nothing_added_gives_nothing(vault):
    with Sealer(vault) as sealer:
        assert list(sealer.sealed()) == []


def test_the_sealed_files_hold_no_plaintext(vault, tmp_path, monkeypatch):
    made = []

    def sealed_file(**_options):
        made.append(tmp_path / f"sealed-{len(made)}")
        return open(made[-1], "w+b")

    monkeypatch.setattr(sealing.tempfile, "TemporaryFile", sealed_file)
    records = _records(12)
    # The first chunk sealed here, the others by two workers, each into a file of its own.
    with Sealer(vault, parallel_from=5, chunk=4, workers=2) as sealer:
        for record in records:
            sealer.add(record, _index(record))
        columns = list(sealer.sealed())
        backlog = made.index(tmp_path / Path(sealer._backlog.name).name)  # noqa: SLF001 - the chunks waiting
        written = [path.read_bytes() for path in made]
    # This process's own file, the backlog and one file a worker: each written, none holding plaintext.
    assert len(columns) == 12 and len(made) == 4 and all(written)
    # What the sealed files hold, item by item: a token, a blind index and the child flag, nothing else (a
    # pickled date would be four raw bytes, not findable as text). The backlog holds ciphertext only.
    stored = []
    for blob in written[:backlog] + written[backlog + 1:]:
        with io.BytesIO(blob) as stored_file:
            while stored_file.tell() < len(blob):
                stored.extend(pickle.load(stored_file))
    assert sorted(stored) == sorted(columns)
    assert all(isinstance(token, str) and isinstance(index, str) and isinstance(is_child, bool)
               for token, index, is_child in stored)
    for record in records:
        for value in (record.bsn, record.surname, record.first_names, record.birth_date.isoformat()):
            for blob in written:
                assert value.encode() not in blob
                assert value.encode("utf-16-le") not in blob  # pickle may store text in other forms
    assert not any(SURNAME[:6].encode() in blob for blob in written)


def test_the_reading_never_waits_for_a_worker_that_falls_behind(vault):
    """A worker that gets no CPU at all (stopped here) keeps nobody waiting: its chunks wait in the backlog,
    and are sealed, in order, once it runs again."""
    records = _records(60)
    with Sealer(vault, parallel_from=0, chunk=2, workers=1) as sealer:
        sealer.add(records[0], _index(records[0]))
        sealer.add(records[1], _index(records[1]))  # the first chunk starts the worker
        worker = sealer._workers[0]._process  # noqa: SLF001 - the sealer's own process
        deadline = time.monotonic() + 10  # it lowers its priority as it starts
        while os.getpriority(os.PRIO_PROCESS, worker.pid) != sealing.WORKER_NICENESS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == sealing.WORKER_NICENESS
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            adding = threading.Thread(target=lambda: [sealer.add(record, _index(record)) for record in records[2:]]
                                      + [sealer.finish()], daemon=True)
            adding.start()
            adding.join(timeout=10)
            assert not adding.is_alive(), "the reading waited for a stopped worker"
            assert sealer.in_flight == 0 and sealer.unsealed >= 58
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        assert _opened(vault, sealer.sealed()) == _expected(vault, records)


def test_leaving_stops_the_workers_and_closes_the_files(vault, tmp_path, monkeypatch):
    made = []

    def sealed_file(**_options):
        made.append(open(tmp_path / f"sealed-{len(made)}", "w+b"))
        return made[-1]

    monkeypatch.setattr(sealing.tempfile, "TemporaryFile", sealed_file)
    # The first two chunks sealed here (so this process's own file exists), the rest by the workers.
    with Sealer(vault, parallel_from=4, chunk=2, workers=2) as sealer:
        for record in _records(9):
            sealer.add(record, _index(record))
        workers = [worker._process for worker in sealer._workers]  # noqa: SLF001 - the sealer's own processes
        assert len(workers) == 2 and all(worker.is_alive() for worker in workers)
    assert not any(worker.is_alive() for worker in workers)
    assert len(made) == 4 and all(made_file.closed for made_file in made)  # the real ones have no name


def test_a_worker_that_dies_stops_the_sealing_with_a_clear_error(vault):
    with pytest.raises(sealing.SealingStopped, match="stopped unexpectedly.*run the sync again"), \
            Sealer(vault, parallel_from=0, chunk=2, workers=1) as sealer:
        for record in _records(4):
            sealer.add(record, _index(record))
        sealer._workers[0]._process.kill()  # noqa: SLF001 - as the kernel's out-of-memory killer would
        for record in _records(6):
            sealer.add(record, _index(record))
        list(sealer.sealed())


def test_a_failure_to_seal_here_reaches_the_caller_as_it_was(vault):
    # A birth date that is not a date cannot be sealed.
    damaged = [*_records(4), dataclasses.replace(_records(1)[0], birth_date="2015-01-01")]
    with pytest.raises(AttributeError, match="isoformat"), Sealer(vault, parallel_from=10_000, chunk=2) as sealer:
        for record in damaged:
            sealer.add(record, _index(record))
        list(sealer.sealed())


@pytest.mark.parametrize("chunks_after", [0, 40], ids=["failing chunk last", "reading goes on after it"])
def test_a_failure_in_a_worker_reaches_the_caller_by_its_type_only(vault, chunks_after):
    """Only the error's type crosses back from a worker (its text or its arguments may hold a name or a BSN),
    and it is what the caller sees, also when the worker ended before the next chunk could reach it."""
    damaged = dataclasses.replace(_records(1)[0], surname="Jansen\udcff")  # a lone surrogate: not UTF-8
    records = [*_records(3), damaged, *_records(2 * chunks_after)]
    with pytest.raises(sealing.SealingFailed, match=r"\(UnicodeEncodeError\).*Check the export") as raised, \
            Sealer(vault, parallel_from=0, chunk=2, workers=1) as sealer:
        for record in records:
            sealer.add(record, _index(record))
            time.sleep(0.001)
        list(sealer.sealed())
    assert "Jansen" not in str(raised.value) and "Jansen" not in repr(raised.value.args)


def test_the_columns_are_read_once_and_only_after_every_record(vault):
    with Sealer(vault) as sealer:
        sealer.add(_records(1)[0], None)
        assert len(list(sealer.sealed())) == 1
        with pytest.raises(RuntimeError, match="read once"):
            list(sealer.sealed())
        with pytest.raises(RuntimeError, match="before reading"):
            sealer.add(_records(1)[0], None)


def test_a_record_without_personal_fields_seals_to_nothing(vault):
    bare = CardholderRecord("line 1", "H1", "C1", "P1", birth_date=None)
    with Sealer(vault) as sealer:
        sealer.add(bare, None)
        assert list(sealer.sealed()) == [(None, None, None)]
