"""Reading a source in a worker process (adapter.read_ahead): the same records, errors and log lines as
reading it here, and no worker left behind."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from adapter import read_ahead, scheduler, sync_lock
from adapter.connector import ConnectorError
from adapter.db import Database
from adapter.logs import prepare_handler
from adapter.mapping import MappingError
from adapter.models import Cardholder, Pass, SyncRun, SyncStatus
from adapter.read_ahead import ReadAhead, SourceReadingFailed, SourceReadingStopped
from adapter.sealing import Sealer
from adapter.sync_plan import Planner
from adapter.sync_snapshot import Snapshot
from adapter.records import CardholderRecord, RejectedRecord
from adapter.redaction import mask_pass_number
from adapter.runtime import Runtime
from adapter.settings import SourceSettings, SyncSettings
from adapter.sources import MappedSource, iter_mapped, read_source
from adapter.sync import failure_reason, run_sync
from tests.conftest import REPO, make_settings
from tests.fixture_personal_data import DEMO_PASS_NUMBERS, TEST_BSNS, find_personal_data

TODAY = date(2026, 11, 29)
BSN, PASS_NUMBER = TEST_BSNS[0], DEMO_PASS_NUMBERS[0]


def test_the_worker_reads_the_same_records_as_reading_here(demo_csv_source):
    here = list(iter_mapped(demo_csv_source, source_name="demo", today=TODAY))
    with ReadAhead(MappedSource(demo_csv_source, "demo", today=TODAY), chunk=4) as records:
        there = list(records)
    assert there == here and len(here) == 6
    assert all(type(record) is CardholderRecord for record in there)
    assert there[3].bsn == "000009921" and there[3].birth_date == here[3].birth_date


def test_given_the_keyed_hashes_the_worker_hashes_each_record_as_the_planner_would(demo_csv_source, vault):
    # On 1 January 2013 two children are "born in the future": rejected, and a rejected line has no hash.
    here = list(iter_mapped(demo_csv_source, source_name="demo", today=date(2013, 1, 1)))
    with ReadAhead(MappedSource(demo_csv_source, "demo", today=date(2013, 1, 1)), chunk=4) as records:
        records.start(digest_with=vault.hashes)
        there = list(records.digested())
    assert [record for record, _content_hash in there] == here
    assert [content_hash for record, content_hash in there if isinstance(record, RejectedRecord)] == [None, None]
    cardholders = [(record, content_hash) for record, content_hash in there if isinstance(record, CardholderRecord)]
    assert len(cardholders) == 4 and all(record.bsn for record, _content_hash in cardholders)
    with Sealer(vault) as sealer, Planner(Snapshot("demo", {}, {}, {}, frozenset(), None), vault, sealer) as planner:
        for record, content_hash in cardholders:
            assert content_hash == planner._first_sight_of(record, None)[0]
    with ReadAhead(MappedSource(demo_csv_source, "demo", today=TODAY)) as records:
        assert {content_hash for _record, content_hash in records.digested()} == {None}, "no keys, no hash"


def test_the_planner_takes_the_content_hash_it_is_given_and_computes_the_blind_index_itself(demo_csv_source,
                                                                                            vault):
    record = next(record for record in iter_mapped(demo_csv_source, source_name="demo", today=TODAY)
                  if isinstance(record, CardholderRecord) and record.bsn)
    given = "c" * 32
    with Sealer(vault) as sealer, Planner(Snapshot("demo", {}, {}, {}, frozenset(), None), vault, sealer) as planner:
        planner.feed(record, given)
        with planner.finish(TODAY, 3) as plan:
            assert [write.content_hash for write in plan.holders] == [given]
            assert [bsn_index for _token, bsn_index, _child in sealer.sealed()] == [
                vault.hashes.blind_index(record.bsn)]


def test_rejected_records_cross_as_they_are(demo_csv_source):
    # On 1 January 2013 two children are "born in the future".
    with ReadAhead(MappedSource(demo_csv_source, "demo", today=date(2013, 1, 1))) as records:
        rejected = [record for record in records if isinstance(record, RejectedRecord)]
    assert [(record.source_key, record.reasons) for record in rejected] == [
        ("line 3", ("birth_date: lies in the future",)), ("line 4", ("birth_date: lies in the future",))]


class _Unpicklable(Exception):
    def __init__(self, text: str):
        super().__init__(text)
        self.lock = threading.Lock()


@dataclass(frozen=True)
class _FromWorker:
    """Yields one rejected record naming the process that read it, then whatever ``then`` says."""

    then: str = "end"

    def open(self):
        yield RejectedRecord(source_key=f"pid {os.getpid()}", reasons=("read",))
        if self.then == "log":
            logger = logging.getLogger("connectors.test")
            # A careless connector on purpose: it logs a BSN and a full pass number, and the test below proves
            # they arrive redacted. Fixture data (tests/fixture_personal_data.py), so the session's own log
            # check would see a leak too.
            logger.warning("page 2 of pass %s for BSN %s", PASS_NUMBER, BSN)
            logger.warning("pass %s for BSN %s", PASS_NUMBER)  # arguments that do not match
            logger.warning("a lock", extra={"lock": threading.Lock(), "bsn": BSN})  # does not pickle
            warnings.warn(f"BSN {BSN} looks odd")
        elif self.then == "unpicklable":
            raise _Unpicklable(f"source 'gemeente' refused BSN {BSN}")
        elif self.then == "die":
            os._exit(3)
        elif self.then == "interrupt":
            raise KeyboardInterrupt
        elif self.then == "reset":
            raise ConnectionResetError(104, "Connection reset by peer")  # the source's server hung up
        elif self.then == "hang":
            time.sleep(3600)  # a connector with no timeout of its own, waiting on a source that never answers
        elif self.then == "slow":
            # 4.5 s in all, longer than the test's stall deadline (4 s), but never 4 s without a record: only
            # records sent as they come keep it from stalling. The first comes at once, so a worker slow to start
            # on a busy machine does not count against the deadline.
            for number in range(4):
                if number:
                    time.sleep(1.5)
                yield RejectedRecord(source_key=f"slow {number}", reasons=("read",))
        elif self.then == "forever":
            while True:
                yield RejectedRecord(source_key="again")


def test_the_records_are_read_in_another_process():
    with ReadAhead(_FromWorker(), chunk=1) as records:
        first = next(iter(records))
    assert first.source_key.startswith("pid ") and first.source_key != f"pid {os.getpid()}"


def test_a_connector_error_in_the_worker_is_raised_here_as_it_was_raised_there(tmp_path):
    missing = SourceSettings(connector="csv", mapping=REPO / "mappings" / "demo-csv.yaml",
                             options={"path": str(tmp_path / "nowhere")})
    with pytest.raises(ConnectorError) as raised, read_source(missing, source_name="gemeente") as records:
        list(records)
    here = pytest.raises(ConnectorError, lambda: list(iter_mapped(missing, source_name="gemeente")))
    assert type(raised.value) is type(here.value) and str(raised.value) == str(here.value)
    assert "Traceback" in str(raised.value.__cause__)  # where it happened in the worker, for the log


def test_a_broken_mapping_crosses_with_every_problem(tmp_path):
    mapping = tmp_path / "broken.yaml"
    mapping.write_text("version: 1\nrecords: {}\nfields: {nonsense: 1}\n", encoding="utf-8")
    broken = SourceSettings(connector="csv", mapping=mapping, options={"path": str(tmp_path)})
    with pytest.raises(MappingError) as raised, read_source(broken, source_name="gemeente") as records:
        list(records)
    assert raised.value.problems and str(raised.value).startswith(str(mapping))


class _AsCrossed(logging.Handler):
    """Keeps each record's text as it arrived, before any handler of this process redacts it."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.msg} {record.args} {record.exc_text} {vars(record)}")


def test_the_workers_log_lines_reach_this_process_redacted(caplog):
    caplog.set_level(logging.INFO)  # the worker logs at this process's level
    as_crossed = _AsCrossed()
    written = io.StringIO()
    handler = prepare_handler(logging.StreamHandler(written), json_lines=False)
    loggers = [logging.getLogger("connectors.test"), logging.getLogger("py.warnings")]
    for logger in loggers:
        logger.addHandler(as_crossed)  # first: it sees the records before the redacting handler
        logger.addHandler(handler)
    try:
        with ReadAhead(_FromWorker("log")) as records:
            list(records)
    finally:
        for logger in loggers:
            logger.removeHandler(as_crossed)
            logger.removeHandler(handler)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4, messages
    assert "page 2 of pass" in messages[0] and mask_pass_number(PASS_NUMBER) in messages[0]
    assert "arguments did not match" in messages[1] and messages[2] == "a lock" and "looks odd" in messages[3]
    assert "connectors.test: page 2 of pass" in written.getvalue()
    # Redacted in the worker already: the records that crossed hold no BSN and no full pass number.
    assert len(as_crossed.texts) == 4
    for text in (" ".join(as_crossed.texts), written.getvalue()):
        assert find_personal_data(text) == []


def test_an_error_that_does_not_pickle_crosses_under_its_own_name_and_text():
    with pytest.raises(SourceReadingFailed) as raised, ReadAhead(_FromWorker("unpicklable")) as records:
        list(records)
    assert type(raised.value).__name__ == "_Unpicklable"
    assert failure_reason(raised.value) == "failed: _Unpicklable: source 'gemeente' refused BSN *********"


def test_an_interrupt_in_the_worker_fails_the_reading_here_instead_of_interrupting_this_process():
    # Raised here as itself it read as the operator's Ctrl-C ("Aborted!"), and would stop a caller that
    # only handles the errors of a failed run.
    with pytest.raises(SourceReadingFailed) as raised, ReadAhead(_FromWorker("interrupt")) as records:
        list(records)
    assert type(raised.value).__name__ == "KeyboardInterrupt" and isinstance(raised.value, Exception)


def test_a_source_whose_server_hangs_up_fails_the_reading_with_that_error_not_as_a_worker_that_died():
    """The worker ends quietly only when its own pipe to the sync broke; a source's broken connection is the run's
    failure, which was reported as 'the process reading the source stopped unexpectedly (exit code 0)'."""
    with pytest.raises(ConnectionResetError, match="reset by peer"), ReadAhead(_FromWorker("reset")) as records:
        list(records)


def test_a_source_that_sends_nothing_for_the_stall_deadline_fails_the_reading_and_stops_the_worker():
    # Before, the sync waited for ever, holding the source's lock: every later night found the source busy.
    reading = ReadAhead(_FromWorker("hang"), stall_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(read_ahead.SourceReadingStalled) as raised, reading as records:
        list(records)
    assert time.monotonic() - started < 15
    assert "sent nothing for 1 s" in str(raised.value) and "read_stall_minutes" in str(raised.value)
    assert not reading._worker.is_alive()


def test_a_slow_source_that_keeps_sending_is_not_stalled():
    # The worker sends what it has every flush_seconds, so a source slower than a chunk per deadline still moves.
    with ReadAhead(_FromWorker("slow"), stall_seconds=4.0, flush_seconds=0.1) as records:
        keys = [record.source_key for record in records]
    assert keys[1:] == [f"slow {number}" for number in range(4)]


def test_closing_from_another_thread_wakes_the_reader_instead_of_leaving_it_waiting():
    reading = ReadAhead(_FromWorker("forever"), chunk=10)
    errors = []

    def read() -> None:
        try:
            for _record in reading:
                time.sleep(0.001)
        except RuntimeError as error:
            errors.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    reading.close()
    reader.join(timeout=30)
    assert not reader.is_alive(), "the reader still waits after close()"
    assert errors and "closed before its end" in errors[0]


def test_nothing_is_read_before_start_or_the_first_record(tmp_path):
    reading = ReadAhead(_FromWorker())
    assert reading._worker is None
    reading.start()
    reading.start()  # once
    with reading as records:
        assert [record.reasons for record in records] == [("read",)]


def _held(reading: ReadAhead) -> int:
    return reading._chunks.qsize()


def _wait_until(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_before_the_engine_takes_a_record_the_worker_reads_ahead_up_to_the_full_store():
    # An unchanged night: the engine loads its snapshot while the worker reads.
    with ReadAhead(_FromWorker("forever"), chunk=1) as reading:
        reading.start()
        assert _wait_until(lambda: _held(reading) == read_ahead.AHEAD)


def _held_and_limit(reading: ReadAhead) -> tuple[int, int]:
    """The chunks held and the limit, read together (both change under that lock)."""
    with reading._room:
        return reading._chunks.qsize(), reading._limit


def test_once_a_slower_engine_takes_records_the_store_stays_small():
    # A first sync: the engine plans slower than the worker reads, from the start. Holding AHEAD chunks
    # then would only cost memory (some 16 MB at 2,000 records a chunk).
    held = []
    with ReadAhead(_FromWorker("forever"), chunk=1) as reading:
        records = iter(reading)
        for _ in range(3 * read_ahead.AHEAD):
            next(records)
            time.sleep(0.005)
            held.append(_held_and_limit(reading))
    # The receiver may put many chunks before this thread wakes for its first take; from there the limit
    # falls by one a take at least, so after AHEAD takes the store holds STEADY at most.
    assert all(count <= limit for count, limit in held)
    assert max(count for count, _limit in held[read_ahead.AHEAD:]) <= read_ahead.STEADY
    assert held[-1][1] == read_ahead.STEADY


def test_a_store_filled_ahead_drains_to_the_steady_size_without_growing_again():
    with ReadAhead(_FromWorker("forever"), chunk=1) as reading:
        reading.start()
        assert _wait_until(lambda: _held(reading) == read_ahead.AHEAD)
        records = iter(reading)
        held = []
        for _ in range(2 * read_ahead.AHEAD):
            next(records)
            held.append(_held_and_limit(reading))
            time.sleep(0.002)
    limits = [limit for _count, limit in held]
    assert all(later <= earlier for earlier, later in zip(limits, limits[1:]))  # the limit never grows again
    assert all(count <= limit for count, limit in held)
    assert limits[-1] == read_ahead.STEADY


def test_a_worker_that_dies_stops_the_reading_with_what_to_do():
    with pytest.raises(SourceReadingStopped, match="exit code 3.*run the sync again"):
        with ReadAhead(_FromWorker("die"), chunk=1) as records:
            list(records)


def test_a_worker_that_cannot_start_fails_with_its_own_error(monkeypatch):
    # Out of processes or memory: the operator must see why, not an error of the clean-up after it.
    def refuse(_process):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkServerProcess, "start", refuse)
    reading = ReadAhead(_FromWorker("forever"))
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        with reading as records:
            list(records)
    reading.close()  # closing again is still fine


def test_a_receiving_thread_that_cannot_start_fails_with_its_own_error_and_stops_the_worker(monkeypatch):
    class NoThread(threading.Thread):
        def start(self):
            raise RuntimeError("can't start new thread")

    reading = ReadAhead(_FromWorker("forever"))
    monkeypatch.setattr(read_ahead, "threading", SimpleNamespace(Thread=NoThread))
    with pytest.raises(RuntimeError, match="can't start new thread"):
        with reading as records:
            list(records)
    assert reading._worker is not None and not reading._worker.is_alive()


def test_leaving_early_stops_the_worker():
    reading = ReadAhead(_FromWorker("forever"), chunk=10)
    with reading as records:
        for count, _record in enumerate(records):
            if count == 50:
                break
    assert not reading._worker.is_alive()
    never_read = ReadAhead(_FromWorker("forever"))
    never_read.start()
    never_read.close()
    assert not never_read._worker.is_alive()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_nightly_job_syncs_through_the_worker(tmp_path, database_url):
    exports = REPO / "connectors" / "samples" / "csv" / "exports"
    source = {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"), "options": {"path": str(exports)}}
    runtime = Runtime(make_settings(tmp_path, database_url, sources={"gemeente": source}))
    try:
        scheduler._sync_job(runtime, "gemeente", Path(tmp_path))()
        with runtime.db.read() as session:
            run = session.execute(select(SyncRun)).scalar_one()
            holders = session.scalar(select(func.count()).select_from(Cardholder))
            passes = session.scalar(select(func.count()).select_from(Pass))
        read_here = list(iter_mapped(runtime.settings.sources["gemeente"], source_name="gemeente"))
        assert (run.status, run.records_read, holders) == (
            SyncStatus.SUCCEEDED, len(read_here), len({record.cardholder_id for record in read_here}))
        assert passes == len(read_here) == 6
    finally:
        runtime.close()


@dataclass(frozen=True)
class _Large:
    """``count`` rejected records of about 10 KB each: a megabyte, many times what a pipe holds."""

    count: int = 100

    def open(self):
        for number in range(self.count):
            yield RejectedRecord(source_key=f"{number:05d}" + "x" * 10_000)


def test_the_worker_reads_ahead_while_this_process_is_busy_elsewhere():
    reading = ReadAhead(_Large(), chunk=10)
    reading.start()
    with reading as records:
        reading._worker.join(timeout=60)  # nothing taken yet: the engine would be loading its snapshot
        finished_ahead = not reading._worker.is_alive()
        keys = [record.source_key[:5] for record in records]
    assert finished_ahead, "the worker waited for the engine instead of reading on"
    assert keys == [f"{number:05d}" for number in range(100)]


def test_the_sync_command_reads_through_the_worker_and_says_what_failed(tmp_path, sqlite_url):
    from click.testing import CliRunner

    from adapter.cli import cli

    exports = tmp_path / "exports"
    config = tmp_path / "adapter.yaml"

    def sync():
        config.write_text(json.dumps({
            "data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
            "budgets": str(REPO / "config" / "budgets.yaml"),
            "sources": {"gemeente": {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
                                     "options": {"path": str(exports)}}}}), encoding="utf-8")
        return CliRunner().invoke(cli, ["--config", str(config), "sync", "gemeente"])

    failed = sync()  # no export folder yet: the worker's connector error, told as it would be told here
    assert failed.exit_code == 1
    assert "Error: sync gemeente failed: ConnectorError: source 'gemeente': the export " in failed.output
    assert "The previous data stays in force" in failed.output
    shutil.copytree(REPO / "connectors" / "samples" / "csv" / "exports", exports)
    done = sync()
    assert done.exit_code == 0, done.output
    assert "succeeded" in done.output and "read 6, created 6" in done.output


def test_a_run_that_finds_the_source_busy_never_starts_reading_it(sqlite_url, vault):
    db = Database(sqlite_url)
    # Another process holds the source: its lock that dies with it (here taken on a descriptor of our own, which
    # conflicts as another process's would), and its row.
    other = sync_lock.process_lock(db, "gemeente")
    assert other is not None and other.try_acquire()
    with db.write() as session:
        sync_lock.take(session, "gemeente", "other-host:4242", exclusive_proven=True)
    records = ReadAhead(_FromWorker())
    with records, pytest.raises(sync_lock.SyncBusy):
        run_sync(db, vault, "gemeente", records, settings=SyncSettings())
    assert records._worker is None, "the worker read the source for a run that could not take the lock"
    with db.write() as session:
        sync_lock.release(session, "gemeente", "other-host:4242")
    other.release()
    started = ReadAhead(_FromWorker())
    with started:
        result = run_sync(db, vault, "gemeente", started, settings=SyncSettings(min_row_share=0.0))
    assert started._worker is not None and result.records_read == 1
    db.dispose()


def _state(db: Database) -> dict:
    from adapter.models import Budget

    with db.read() as session:
        return {
            "holders": sorted(session.execute(select(Cardholder.source_key, Cardholder.content_hash,
                                                     Cardholder.bsn_index, Cardholder.status)).all()),
            "passes": sorted(session.execute(select(Pass.pass_number, Pass.status, Pass.valid_until)).all()),
            "budgets": sorted(session.execute(select(Budget.cardholder_id, Budget.rule_code,
                                                     Budget.granted_cents)).all()),
        }


def test_a_sync_of_records_digested_by_the_worker_leaves_what_one_of_plain_records_leaves(
        tmp_path, sqlite_template, vault):
    """Two nights of a generated export (lost leading zeros, replaced and blocked passes, changed rows),
    each synced once through the worker, which digests, and once from records read here."""
    import shutil

    from adapter.demo_data import write
    from adapter.rules import load_rules

    rules = load_rules(REPO / "config" / "budgets.yaml")
    databases = {}
    for way in ("worker", "here"):
        shutil.copyfile(sqlite_template, tmp_path / f"{way}.db")
        databases[way] = Database(f"sqlite:///{tmp_path / way}.db")
    try:
        for night, next_night in enumerate((False, True)):
            export = tmp_path / f"night-{night}.csv"
            write("csv", export, 400, seed=7, next_night=next_night)
            source = SourceSettings(connector="csv", mapping=REPO / "mappings" / "demo-csv.yaml",
                                    options={"path": str(export), "encoding": "cp1252"})
            settings = SyncSettings(max_change_share=1.0, min_row_share=0.0)
            with read_source(source, source_name="gemeente") as records:
                through_worker = run_sync(databases["worker"], vault, "gemeente", records, settings=settings,
                                          rules=rules, today=TODAY)
            read_here = list(iter_mapped(source, source_name="gemeente"))
            here = run_sync(databases["here"], vault, "gemeente", read_here, settings=settings, rules=rules,
                            today=TODAY)
            assert (through_worker.created, through_worker.updated, through_worker.unchanged,
                    through_worker.rejected, through_worker.budgets_granted) == (
                here.created, here.updated, here.unchanged, here.rejected, here.budgets_granted)
            assert _state(databases["worker"]) == _state(databases["here"])
        assert here.updated > 0 and here.unchanged > 0, "the second night changes some rows and keeps most"
    finally:
        for database in databases.values():
            database.dispose()


def test_only_a_first_load_has_the_worker_digest_the_records(sqlite_url, vault, demo_csv_source, monkeypatch):
    # A first load's planner has every line to judge, and the worker's core to spare; a nightly re-sync's
    # reading is the slower side, so the planner digests there itself (and only what it needs).
    started: list[tuple[ReadAhead, object]] = []  # each read-ahead with what it was first started with
    start = ReadAhead.start

    def noting_start(self, *, digest_with=None):  # type: ignore[no-untyped-def]
        if not any(read_ahead is self for read_ahead, _digest_with in started):  # later calls do nothing
            started.append((self, digest_with))
        start(self, digest_with=digest_with)

    monkeypatch.setattr(ReadAhead, "start", noting_start)
    db = Database(sqlite_url)
    try:
        for _night in range(2):
            with read_source(demo_csv_source, source_name="gemeente") as records:
                result = run_sync(db, vault, "gemeente", records, settings=SyncSettings(), today=TODAY)
            assert result.status == SyncStatus.SUCCEEDED
    finally:
        db.dispose()
    assert [digest_with for _read_ahead, digest_with in started] == [vault.hashes, None]


_ORPHANED_WORKER = """
import logging, multiprocessing
from adapter.read_ahead import _read_in_worker
from adapter.records import RejectedRecord

class Lines:
    def open(self):
        for number in range(10_000):
            yield RejectedRecord(source_key=f"line {number}")

receiving, sending = multiprocessing.Pipe(duplex=False)
receiving.close()  # the sync that started the worker was killed
_read_in_worker(Lines(), sending, 10, 60.0, logging.INFO, None)
"""


@pytest.mark.parametrize("failing", [False, True])
def test_a_worker_whose_sync_was_killed_ends_quietly_not_with_a_traceback_on_stderr(failing):
    """Its stderr is outside every redacting handler: with the sync gone (SIGKILL, the OOM killer), sending the next
    chunk, or the failure, broke the pipe and multiprocessing printed the traceback there."""
    import subprocess
    import sys

    script = _ORPHANED_WORKER.replace("range(10_000)", "range(10_000) if not 1 / 0 else ()") if failing \
        else _ORPHANED_WORKER
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (ended.returncode, ended.stderr) == (0, "")
