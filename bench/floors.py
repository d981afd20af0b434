"""The sync floors: what any sync of this file must at least spend, measured as child tasks.

python -m bench.floors csv_parse FILE
python -m bench.floors parse_validate_hash FILE MAPPING
python -m bench.floors bulk_load FILE DATABASE_URL   (sqlite3 executemany in one transaction; PostgreSQL COPY)
python -m bench.floors encrypt FILE                  (one MultiFernet encryption per row)
python -m bench.floors zeep_parse ENDPOINT PAGE_SIZE (zeep's own parse of every SOAP page, no mapping)

Each prints its work time (after imports and setup) as the result line.
"""

from __future__ import annotations

import csv
import sys
import time
from datetime import date
from pathlib import Path

from bench.measure import emit


def _rows(path: Path):  # type: ignore[no-untyped-def]
    with path.open(encoding="cp1252", newline="") as stream:
        reader = csv.reader(stream, delimiter=";")
        next(reader)
        yield from reader


def csv_parse(path: str) -> None:
    started = time.perf_counter()
    count = sum(1 for _ in _rows(Path(path)))
    emit(seconds=time.perf_counter() - started, rows=count)


def parse_validate_hash(path: str, mapping_path: str) -> None:
    """The real connector, mapping and validation, plus one keyed content hash per record."""
    from adapter.crypto import Vault, generate_blind_index_key, generate_encryption_key
    from adapter.mapping import load_mapping
    from adapter.records import CardholderRecord
    from adapter.sources import map_records
    from connectors.csv_file import CsvConnector

    vault = Vault([generate_encryption_key()], generate_blind_index_key())
    connector = CsvConnector({"path": path, "encoding": "cp1252"}, source_name="bench")
    mapping = load_mapping(Path(mapping_path))
    started = time.perf_counter()
    count = rejected = 0
    for record in map_records(connector, mapping, today=date.today()):
        if isinstance(record, CardholderRecord):
            vault.content_hash((record.household_id, record.cardholder_id, record.pass_number, record.bsn,
                                record.first_names, record.initials, record.surname_prefix, record.surname,
                                record.birth_date, record.valid_from, record.valid_until, record.pass_status.value,
                                record.replaces_pass_number, record.is_child))
            count += 1
        else:
            rejected += 1
    emit(seconds=time.perf_counter() - started, rows=count, rejected=rejected)


_COLUMNS = 12


def bulk_load(path: str, database_url: str) -> None:
    """The same rows into one plain table, as fast as the database takes them."""
    rows = list(_rows(Path(path)))  # read first: this floor is the load alone
    columns = ", ".join(f"c{index} text" for index in range(_COLUMNS))
    if database_url.startswith("sqlite"):
        import sqlite3

        from adapter.db import SQLITE_PAGE_SIZE

        connection = sqlite3.connect(database_url.split("///", 1)[1])
        # The page size and pragmas adapter.db sets, so the floor writes to the same kind of database (but for
        # its check-point threshold, which one large transaction passes either way).
        connection.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"CREATE TABLE bench_floor_rows ({columns})")
        started = time.perf_counter()
        with connection:  # one transaction
            connection.executemany(f"INSERT INTO bench_floor_rows VALUES ({', '.join('?' * _COLUMNS)})", rows)
        seconds = time.perf_counter() - started
        connection.close()
    else:
        import psycopg

        plain_url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain_url) as connection:
            connection.execute(f"CREATE TABLE bench_floor_rows ({columns})")
            connection.commit()
            started = time.perf_counter()
            with connection.cursor() as cursor, cursor.copy("COPY bench_floor_rows FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            connection.commit()
            seconds = time.perf_counter() - started
    emit(seconds=seconds, rows=len(rows))


def encrypt(path: str) -> None:
    from cryptography.fernet import Fernet, MultiFernet

    vault = MultiFernet([Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())])
    bsns = [row[2] for row in _rows(Path(path))]
    started = time.perf_counter()
    for bsn in bsns:
        vault.encrypt(bsn.encode())
    emit(seconds=time.perf_counter() - started, rows=len(bsns))


def zeep_parse(endpoint: str, page_size: str) -> None:
    """A plain loop over the pages through zeep: the client the SOAP connector builds, no mapping, no sync."""
    from connectors.soap import SAMPLE_WSDL
    from connectors.soap_client import bind_service, build_client

    client = build_client(SAMPLE_WSDL, timeout=10, operation_timeout=120)
    service, _port = bind_service(client, None, None, endpoint)
    started = time.perf_counter()
    page = households = 0
    while True:
        page += 1
        answer = service.zoekPashouders(gemeentecode="0599", pagina=page, maximumAantal=int(page_size))
        households += len(answer.huishouden or [])
        if not answer.indicatorVervolgvraag:
            break
    emit(seconds=time.perf_counter() - started, pages=page, households=households)


TASKS = {"csv_parse": csv_parse, "parse_validate_hash": parse_validate_hash, "bulk_load": bulk_load,
         "encrypt": encrypt, "zeep_parse": zeep_parse}

if __name__ == "__main__":
    TASKS[sys.argv[1]](*sys.argv[2:])
