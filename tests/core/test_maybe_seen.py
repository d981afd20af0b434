"""The filter that tells the planner which keys it may have read before (``adapter.maybe_seen``)."""

from __future__ import annotations

import hashlib

import pytest

from adapter.maybe_seen import BITS_LOG2, MaybeSeen


def _keys(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{number:09d}" for number in range(count)]


def test_a_key_added_is_always_seen_before_whatever_the_filter_holds():
    """The one promise a wrong answer would break: "no" only for a key never added. A tiny filter says
    "maybe" to nearly everything, and is still never wrong."""
    for bits_log2 in (6, 12, BITS_LOG2):
        maybe_seen = MaybeSeen(bits_log2=bits_log2)
        keys: list[object] = [*_keys(20_000, "64"), *(hashlib.sha256(str(n).encode()).digest() for n in range(20_000))]
        for key in keys:
            maybe_seen.seen_before(key)
        assert all(maybe_seen.seen_before(key) for key in keys)


def test_a_first_sight_is_cleared_and_a_second_is_not():
    maybe_seen = MaybeSeen()
    assert maybe_seen.seen_before("6400000001") is False
    assert maybe_seen.seen_before("6400000001") is True
    assert maybe_seen.seen_before(b"\x01" * 32) is False
    assert maybe_seen.seen_before(b"\x01" * 32) is True


def test_wrong_maybes_stay_rare_at_a_million_lines():
    """A million lines enter three keys each; 2**26 bits hold them with few wrong "maybe"s, each of which
    costs a line its wait. Measured at the same load per bit on a filter 64 times smaller, to stay quick:
    47,000 keys in 2**20 bits."""
    maybe_seen = MaybeSeen(bits_log2=20)
    wrong = sum(maybe_seen.seen_before(key) for key in _keys(3_000_000 >> 6, "A"))
    assert wrong / (3_000_000 >> 6) < 0.003  # about one in 800 at full size, as the planner asks while filling
    strangers = _keys(50_000, "B")
    assert sum(maybe_seen.seen_before(key) for key in strangers) / len(strangers) < 0.02  # once full


def test_the_same_text_as_two_kinds_of_key_is_two_keys():
    maybe_seen = MaybeSeen()
    assert [maybe_seen.seen_before("P0000001", kind) for kind in range(4)] == [False] * 4
    assert [maybe_seen.seen_before("P0000001", kind) for kind in range(4)] == [True] * 4


def _resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_the_filter_takes_eight_megabytes_only_as_keys_fill_it():
    """8 MB at most; a nightly sync adds few keys and should not pay for all of it."""
    before = _resident_kib()
    filters = [MaybeSeen() for _ in range(8)]
    assert _resident_kib() - before < 8 * 1024  # eight of them, untouched: less than one's size
    assert all(len(f._words) * f._words.itemsize == 2 ** BITS_LOG2 // 8 == 8 * 2 ** 20 for f in filters)


@pytest.mark.parametrize("bits_log2", [0, 5, 41])
def test_an_impossible_size_is_refused(bits_log2):
    with pytest.raises(ValueError, match="bits_log2"):
        MaybeSeen(bits_log2=bits_log2)
