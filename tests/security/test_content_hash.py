"""The row content hash must keep its exact encoding: databases store it and compare it nightly."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.crypto import Vault, generate_encryption_key


def _reference_hash(index_key: bytes, parts: tuple[object, ...]) -> str:
    """The encoding stored hashes were written with: HMAC-SHA256 of 'row' 0x1f + parts joined by 0x1f."""
    joined = "\x1f".join("" if part is None else str(part) for part in parts)
    return hmac.new(index_key, b"row\x1f" + joined.encode(), hashlib.sha256).hexdigest()[:32]


parts_strategy = st.tuples(*[st.one_of(st.none(), st.text(), st.booleans(), st.dates())] * 6)


@given(parts=parts_strategy, key_length=st.sampled_from([32, 63, 64, 65, 100]))
def test_content_hash_matches_the_stored_encoding(parts, key_length):
    index_key = bytes(range(key_length))
    vault = Vault([generate_encryption_key()], base64.urlsafe_b64encode(index_key).decode("ascii"))
    assert vault.content_hash(parts) == _reference_hash(index_key, parts)


def test_content_hash_is_keyed_and_pinned():
    index_key = bytes(32)
    vault = Vault([generate_encryption_key()], base64.urlsafe_b64encode(index_key).decode("ascii"))
    parts = ("H1", "999993653", "Noëlla", None, "de", "Vries", date(2013, 1, 28).isoformat(), True)
    # Pinned (computed by the hmac.new version): a change means every stored row looks changed once.
    assert vault.content_hash(parts) == "00c49490957853813086120635087dda"
    other = Vault([generate_encryption_key()], base64.urlsafe_b64encode(bytes([1]) * 32).decode("ascii"))
    assert other.content_hash(parts) != vault.content_hash(parts)


# The blind index likewise: stored for every BSN, and looked up by it (the counter, retention, the sync).

def _reference_index(index_key: bytes, value: str, purpose: str) -> str:
    """The encoding stored blind indexes were written with: HMAC-SHA256 of purpose 0x1f value, in full."""
    return hmac.new(index_key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()


@given(values=st.lists(st.tuples(st.text(), st.one_of(st.sampled_from(["bsn", "", "b\x1fsn"]), st.text())),
                       max_size=6),
       key_length=st.sampled_from([32, 64, 65, 100]))
def test_blind_index_matches_the_stored_encoding_whatever_was_asked_before(values, key_length):
    index_key = bytes(range(key_length))
    vault = Vault([generate_encryption_key()], base64.urlsafe_b64encode(index_key).decode("ascii"))
    # Asked in turn, and each twice: the keyed state of each purpose is copied, never written to.
    for value, purpose in values + values:
        assert vault.hashes.blind_index(value, purpose) == _reference_index(index_key, value, purpose)


def test_blind_index_is_keyed_and_pinned():
    index_key = bytes(32)
    vault = Vault([generate_encryption_key()], base64.urlsafe_b64encode(index_key).decode("ascii"))
    # Pinned (computed by the hmac.new version): a change makes every stored BSN unfindable.
    assert vault.hashes.blind_index("999993653") == "c918cbdf21994f5063d3d35002ffedf3c6c8d045b782e0b95caa0a11432ae659"
    assert vault.hashes.blind_index("999993653", "pass") != vault.hashes.blind_index("999993653")
    other = Vault([generate_encryption_key()], base64.urlsafe_b64encode(bytes([1]) * 32).decode("ascii"))
    assert other.hashes.blind_index("999993653") != vault.hashes.blind_index("999993653")


@pytest.mark.parametrize("value, purpose", [(999993653, "bsn"), (None, "bsn"), (b"999993653", "bsn"),
                                            ("999993653", b"bsn")])
def test_blind_index_takes_plain_text_only_and_says_so_without_the_value(value, purpose):
    vault = Vault([generate_encryption_key()], base64.urlsafe_b64encode(bytes(32)).decode("ascii"))
    with pytest.raises(TypeError) as raised:
        vault.hashes.blind_index(value, purpose)
    assert "999993653" not in str(raised.value)
