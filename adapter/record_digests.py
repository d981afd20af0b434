"""The keyed digests a sync judges a cardholder record by: the content hash of its cardholder's fields and
the blind index of its BSN.

A nightly sync needs both for every line of the export, and they take only the blind-index key, never the
encryption keys. So the reading worker (``adapter.read_ahead``) computes them beside its parsing, on a core
of its own, and the planner (``adapter.sync_plan``) takes them as they come; a record that comes without
them (a line judged again after waiting, a caller that hands over plain records) the planner digests itself,
with the same functions.
"""

from __future__ import annotations

from adapter.crypto import KeyedHashes
from adapter.records import CardholderRecord

# (content hash, the BSN's blind index or None without a BSN), both as hex digits.
Digests = tuple[str, "str | None"]


def holder_content_hash(hashes: KeyedHashes, record: CardholderRecord) -> str:
    """The content hash of the record's cardholder fields (not its pass's): what tells a changed cardholder.
    Stored hashes depend on these fields in this order."""
    return hashes.content_hash((
        record.household_id, record.bsn, record.first_names, record.initials, record.surname_prefix,
        record.surname, record.birth_date.isoformat() if record.birth_date else None, record.is_child))


def record_digests(hashes: KeyedHashes, record: CardholderRecord) -> Digests:
    return holder_content_hash(hashes, record), hashes.blind_index(record.bsn) if record.bsn else None
