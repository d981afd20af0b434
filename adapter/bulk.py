"""Bulk INSERT for the nightly sync: no RETURNING, no per-row statement building.

SQLAlchemy's executemany builds and type-processes parameters row by row; for the
first sync of a municipality (hundreds of thousands of cardholders, budgets and
ledger entries) that overhead costs more than the database's own work. Here the
caller hands over plain tuples in a column order it names once; only the columns
whose type needs converting on this database (a date or a flag on SQLite) are
touched, with each distinct value converted once; values that are the same for
every row (a timestamp, a status) are appended as one processed tuple. The rows
go straight to the driver: PostgreSQL's COPY, SQLite's ``executemany``, both fed
from an iterator, so no second list of the rows is built.

Rows that name each other (a budget and its first ledger entry) take their ids
from ``reserve_ids`` before the insert instead of reading them back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Index, Integer, String, Table, bindparam, case, func, select, text
from sqlalchemy.dialects.postgresql import REGCLASS, aggregate_order_by
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from adapter.sent_ahead import settled

_MEMO_LIMIT = 10_000
_INTEGER_LITERAL, _STRING_LITERAL = Integer(), String()
# Fewer new rows than this go in with the index in place: dropping and building it would not pay.
_REBUILD_FROM = 50_000


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]],
                constants: Mapping[str, Any] | None = None) -> None:
    """INSERT ``rows`` (dicts, all with the same keys) plus ``constants`` into ``table``.

    For small or irregular inserts; the big ones build tuples and call ``insert_tuples``.
    """
    if not rows:
        return
    columns = list(rows[0])
    insert_tuples(session, table, columns, (tuple([row[name] for name in columns]) for row in rows), constants)


def insert_tuples(session: Session, table: Table, columns: Sequence[str], rows: Iterable[tuple],
                  constants: Mapping[str, Any] | None = None) -> None:
    """INSERT ``rows`` (tuples of Python values in the order of ``columns``) plus ``constants``
    (the same for every row) into ``table``."""
    constants = dict(constants or {})
    connection = session.connection()
    dialect = connection.dialect
    fixed = tuple(_process(_processor(table, name, dialect), value) for name, value in constants.items())
    # SQLite: the constants go into the statement itself, each bound once instead of once a row (see
    # _sqlite_literals); PostgreSQL's COPY has no such thing, so they travel with every row.
    literals = _sqlite_literals(fixed, dialect) if dialect.name == "sqlite" else None
    convert = _converter(table, columns, () if literals is not None else fixed, dialect)
    records = rows if convert is None else map(convert, rows)
    quote = dialect.identifier_preparer.quote
    names = [*columns, *constants]
    column_list = ", ".join(quote(name) for name in names)
    # The driver's own cursor, inside the session's transaction: SQLAlchemy would type-process
    # every value again and (for executemany) wants the rows as one list. It bypasses SQLAlchemy's
    # events, so it waits here for a statement sent ahead (a COPY cannot share a pipeline).
    settled(connection)
    cursor = connection.connection.driver_connection.cursor()
    statement = f"INSERT INTO {quote(table.name)} ({column_list})"
    try:
        if dialect.name == "postgresql":
            # COPY is several times faster than executemany for hundreds of thousands of rows; its binary
            # form spares both sides formatting and parsing every value as text.
            types = _copy_types(cursor, table, names, dialect)
            binary = " (FORMAT BINARY)" if types is not None else ""
            statement = f"COPY {quote(table.name)} ({column_list}) FROM STDIN{binary}"
            made_rows_failed: BaseException | None = None
            try:
                with cursor.copy(statement) as copy:
                    if types is not None:
                        copy.set_types(types)
                    try:
                        for record in records:
                            copy.write_row(record)
                    except Exception as exc:
                        # The driver would end the COPY with this error's text, which the server then logs
                        # (a KeyError names its key, a value error its value); it gets a fixed one instead.
                        made_rows_failed = exc
                        raise _RowsNotMade from None
            except _RowsNotMade:
                assert made_rows_failed is not None
                raise made_rows_failed from None
            return
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        bound = [marker] * (len(columns) if literals is not None else len(names))
        values = ", ".join([*bound, *(literals or [])])
        cursor.executemany(f"{statement} VALUES ({values})", records)
    except dialect.loaded_dbapi.Error as exc:
        # The same exception SQLAlchemy would raise (IntegrityError for a duplicate), without the rows:
        # they hold personal data. (PostgreSQL's own DETAIL line may still name a duplicate key's value.)
        raise DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  dialect=dialect) from exc
    finally:
        cursor.close()


class _RowsNotMade(Exception):
    """What ends a COPY whose rows could not be made; the error itself is raised once the COPY is over."""

    def __str__(self) -> str:
        return "the rows to copy could not be made; the application reports why"


@contextlib.contextmanager
def index_built_after(session: Session, index: Index, *, rows_coming: int) -> Iterator[None]:
    """Around an insert of ``rows_coming`` rows: on SQLite, when they are many and more than the table holds,
    ``index`` is dropped first and built again afterwards, inside the caller's transaction.

    For an index whose keys arrive in random order (the cardholders' BSN blind index): row by row, each
    entry lands on a page outside SQLite's small page cache, which is read and written again; a first sync
    of a million cardholders spent 13 s of its 31 s of writes on that one index. Building it sorts once.
    SQLite's DDL is transactional: a failed run rolls back to the index as it was, and readers (WAL) go on
    seeing the index as it was until the commit. Only the number of rows is read first (one count).
    PostgreSQL keeps its index: dropping one there locks the whole table, the counter's reads included,
    until the commit.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite" or rows_coming < _REBUILD_FROM:
        yield
        return
    table = index.table
    assert table is not None
    held = connection.execute(select(func.count()).select_from(table)).scalar_one()
    if rows_coming <= held:
        yield
        return
    index.drop(connection)
    yield
    index.create(connection)


def reserve_ids(session: Session, table: Table, count: int, *, alone: bool = False) -> Sequence[int]:
    """``count`` ids for new rows of ``table`` (its ``id`` column), taken before the insert so that
    rows naming them (ledger entries of new budgets) need no RETURNING and no read back.

    PostgreSQL: from the table's own sequence, so concurrent writers get other numbers. SQLite:
    after the largest id, as SQLite itself would number them; a write transaction holds the
    database's only write lock (``BEGIN IMMEDIATE``), so nobody else can take them before we
    commit, and the primary key refuses a clash whatever happens.

    ``alone``: the caller holds ``table`` locked for this transaction (a first load, see
    ``adapter.first_load``), so nobody else can insert into it until it ends. PostgreSQL then moves
    the sequence past the run once, instead of drawing every id from it: a first sync of 200,000
    cardholders drew 800,000 ids one by one (0.34 s of the server's time on a slow day; 5 ms so).
    The lock is looked up first; without it the ids are drawn one by one as usual. Another session
    drawing from the sequence without the table (this function, for a second source's sync) within
    the one statement that moves it could still take an id of the run: the primary key then refuses
    that session's row when the lock is gone, never this one's.
    """
    if count <= 0:
        return []
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        if alone:
            run_end = _move_if_locked(connection, table, count)
            if run_end is not None:
                return range(run_end - count + 1, run_end + 1)
        # The sequence is looked up once and bound as a regclass: written inside nextval() the catalog
        # look-up ran once per id, most of the 4 s a 200k-row first sync spent on its half a million ids.
        # The server answers with the bounds of the ids it took. When nobody else took one meanwhile (the
        # usual case) they are one unbroken run and no id travels; otherwise they come back as an array.
        name = connection.execute(select(func.pg_get_serial_sequence(table.name, "id"))).scalar_one()
        sequence = bindparam("sequence", name, type_=REGCLASS)
        taken = select(func.nextval(sequence).label("id")).select_from(func.generate_series(1, count)).subquery()
        first, last, scattered = connection.execute(select(
            func.min(taken.c.id), func.max(taken.c.id),
            case((func.max(taken.c.id) - func.min(taken.c.id) + 1 == count, None),
                 else_=func.array_agg(aggregate_order_by(taken.c.id, taken.c.id))))).one()
        return range(first, last + 1) if scattered is None else scattered
    first = connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
    return range(first, first + count)


def _move_if_locked(connection: Any, table: Table, count: int) -> int | None:
    """When this session holds ``table`` locked against every other writer (PostgreSQL): moves its sequence
    past a run of ``count`` ids and returns the run's last id; else None, and the sequence is untouched.

    One statement: the lock's look-up, the sequence's and its move were three round trips, made for each
    slice of a first load's budgets and ledger entries. CASE evaluates its THEN only when the lock is held
    (nextval and setval are volatile: the planner never runs them ahead). nextval comes first: it also starts
    a sequence never used, and the run's last id is then set as drawn.
    """
    # The table's name is one text parameter, cast where a regclass is wanted (the server types a parameter by
    # its first use).
    return connection.execute(text(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation'"
        " AND relation = CAST(CAST(:table AS text) AS regclass) AND pid = pg_backend_pid() AND granted"
        " AND mode IN ('ExclusiveLock', 'AccessExclusiveLock'))"
        " THEN setval(serial.sequence, nextval(serial.sequence) + CAST(:count AS bigint) - 1) END"
        " FROM (SELECT CAST(pg_get_serial_sequence(CAST(:table AS text), 'id') AS regclass) AS sequence) AS serial"),
        {"table": table.name, "count": count}).scalar_one()


def _sqlite_literals(fixed: tuple, dialect: Any) -> list[str] | None:
    """The constants of an insert as SQL literals, quoted by SQLAlchemy's own literal processors (as it renders
    ``literal_binds``); None when one is of a kind not rendered here, which is then bound on every row.

    Why: SQLite's driver binds every parameter again for every row. A first sync's 370,000 budgets and as many
    ledger entries each carried the same timestamp, status or actor; bound once a row, those four values made
    an insert of 370,000 ledger entries take 3.1 s instead of 2.1 s. The values are the caller's own (already
    processed for the column: a timestamp as its text, an enum as its name), never a cardholder's data.
    """
    rendered = []
    for value in fixed:
        if value is None:
            rendered.append("NULL")
        elif type(value) is int:
            rendered.append(_INTEGER_LITERAL.literal_processor(dialect)(value))
        elif type(value) is str and "\x00" not in value:
            rendered.append(_STRING_LITERAL.literal_processor(dialect)(value))
        else:
            return None
    return rendered


def _converter(table: Table, columns: Sequence[str], fixed: tuple, dialect: Any
               ) -> Callable[[tuple], tuple] | None:
    """What turns one caller's tuple into the driver's row; None when the tuple already is one."""
    processed = [(index, _memoised(processor)) for index, name in enumerate(columns)
                 if (processor := _processor(table, name, dialect)) is not None]
    if not processed:
        return (lambda row: row + fixed) if fixed else None

    def convert(row: tuple) -> tuple:
        values = list(row)
        for index, process in processed:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        return (*values, *fixed)

    return convert


def _copy_types(cursor: Any, table: Table, names: Sequence[str], dialect: Any) -> list[int] | None:
    """The PostgreSQL type of each column, as binary COPY needs them; None if one is not a built-in type
    (then the text form, which the server parses, is used)."""
    types = []
    for name in names:
        compiled = table.c[name].type.compile(dialect=dialect)
        info = cursor.adapters.types.get(compiled.split("(")[0].strip().lower())  # VARCHAR(64) -> varchar
        if info is None:
            return None
        types.append(info.oid)
    return types


def _processor(table: Table, name: str, dialect: Any) -> Any:
    column_type = table.c[name].type
    return column_type.dialect_impl(dialect).bind_processor(dialect)


def _memoised(processor: Any) -> Any:
    """The processor with its answers remembered: a column's dates, flags and states repeat across rows,
    and the processor (a date to SQLite text, an enum to its name) costs more than a dictionary look-up."""
    cache: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return cache[value]
        except KeyError:
            result = processor(value)
            if len(cache) < _MEMO_LIMIT:
                cache[value] = result
            return result
        except TypeError:  # not hashable
            return processor(value)

    return process


def _process(processor: Any, value: Any) -> Any:
    return value if processor is None or value is None else processor(value)
