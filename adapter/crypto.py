"""Personal data at rest: encryption and keyed hashes, behind one small module.

- BSN, names and birth dates are stored as ``MultiFernet`` tokens. The keys come
  from ``ADAPTER_ENCRYPTION_KEYS`` (comma-separated, newest first): the newest key
  encrypts, every listed key decrypts, so keys can be rotated without downtime.
- Exact look-ups by BSN go through a blind index: HMAC-SHA256 under
  ``ADAPTER_BLIND_INDEX_KEY``. A plain hash would not do: there are only 10^9
  BSNs, so an unkeyed hash is reversed by trying them all.
- Change detection over personal fields uses the same keyed construction.

In development mode, when the environment holds no keys, keys are generated
once into ``<data_dir>/dev-keys.json`` so ``make run`` needs no setup. In
production the service refuses to start without keys.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("adapter.crypto")

ENCRYPTION_KEYS_ENV = "ADAPTER_ENCRYPTION_KEYS"
BLIND_INDEX_KEY_ENV = "ADAPTER_BLIND_INDEX_KEY"
DEV_KEYS_FILE = "dev-keys.json"


class KeysMissing(RuntimeError):
    pass


class KeyedHashes:
    """The keyed hashes alone (blind indexes, content hashes), from the blind-index key: what a process that
    compares records but must never decrypt one is given (the sync's reading worker)."""

    def __init__(self, blind_index_key: str):
        self._key_text = blind_index_key
        self._index_key = _decode_index_key(blind_index_key)
        # Keyed once: content_hash copies this state per row instead of re-keying (hmac.new per call).
        self._row_hmac = hmac.new(self._index_key, b"row\x1f", "sha256")
        # Likewise each purpose's blind index, keyed with its purpose when first asked for: a first sync
        # computes one per cardholder, 1.2 instead of 2.0 us each.
        self._index_hmacs: dict[str, hmac.HMAC] = {}

    def key_material(self) -> str:
        """The key these hashes were made from: ``KeyedHashes(key_material())`` hashes the same. Only for
        handing to a worker process of our own through its pipe; never write it anywhere."""
        return self._key_text

    def blind_index(self, value: str, purpose: str = "bsn") -> str:
        """Keyed HMAC-SHA256 of ``purpose`` 0x1f ``value``, for exact look-ups; ``purpose`` separates the uses.
        Both are plain strings: the keyed state is kept by purpose, and an object that equals a purpose but
        prints otherwise (a str enum) would find another purpose's."""
        if purpose.__class__ is not str or value.__class__ is not str:
            raise TypeError("a blind index takes a plain str value and purpose")
        keyed = self._index_hmacs.get(purpose)
        if keyed is None:
            keyed = self._index_hmacs[purpose] = hmac.new(self._index_key, f"{purpose}\x1f".encode(), hashlib.sha256)
        index = keyed.copy()
        index.update(value.encode())
        return index.hexdigest()

    def content_hash(self, parts: Iterable[object]) -> str:
        """Keyed hash of a row's fields, to see whether a source record changed.

        HMAC-SHA256(key, "row" 0x1f fields joined by 0x1f), first 32 hex digits: stored
        hashes depend on this exact encoding, so it must not change. It runs once per
        row on every nightly sync, so the keyed state is made once and copied per row.
        """
        joined = "\x1f".join(["" if part is None else part if part.__class__ is str else str(part)
                              for part in parts])
        row = self._row_hmac.copy()
        row.update(joined.encode())
        return row.hexdigest()[:32]


class Vault:
    """Encrypts and decrypts personal fields; computes keyed hashes over them (``hashes``)."""

    def __init__(self, encryption_keys: list[str], blind_index_key: str):
        if not encryption_keys:
            raise KeysMissing(f"no encryption key: set {ENCRYPTION_KEYS_ENV}")
        self._key_material = (list(encryption_keys), blind_index_key)
        self._fernets = [_fernet(key, position) for position, key in enumerate(encryption_keys, start=1)]
        self._multi = MultiFernet(self._fernets)
        self._newest = self._fernets[0]
        self.hashes = KeyedHashes(blind_index_key)

    @property
    def key_count(self) -> int:
        """How many encryption keys are configured (the newest first)."""
        return len(self._fernets)

    def key_material(self) -> tuple[list[str], str]:
        """The keys this vault was made from: ``Vault(*key_material())`` is the same vault. Only for
        handing to a worker process of our own through its pipe; never write them anywhere."""
        return self._key_material

    def encrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._multi.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str | None) -> str | None:
        if token is None:
            return None
        try:
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise InvalidToken(
                "a stored value cannot be decrypted with any configured key; "
                f"check that {ENCRYPTION_KEYS_ENV} still lists the key it was written with"
            ) from None

    def key_of(self, token: str) -> TokenKey:
        """Which of the configured keys wrote ``token``: the newest (one decryption), an older one, or none (the
        key it was written with is missing)."""
        if _opens(self._newest, token):
            return TokenKey.NEWEST
        return TokenKey.OLDER if _opens(self._multi, token) else TokenKey.MISSING

    def reencrypt(self, token: str | None) -> str | None:
        """The same value under the newest key (for key rotation)."""
        if token is None:
            return None
        return self._multi.rotate(token.encode("ascii")).decode("ascii")

    def blind_index(self, value: str, purpose: str = "bsn") -> str:
        """Keyed HMAC-SHA256 for exact look-ups (see KeyedHashes)."""
        return self.hashes.blind_index(value, purpose)

    def content_hash(self, parts: Iterable[object]) -> str:
        """Keyed hash of a row's fields, to see whether a source record changed (see KeyedHashes)."""
        return self.hashes.content_hash(parts)


class TokenKey(enum.Enum):
    """What ``Vault.key_of`` finds."""

    NEWEST = "newest"
    OLDER = "older"  # key rotation rewrites it under the newest
    MISSING = "missing"  # no configured key reads it


def _fernet(key: str, position: int) -> Fernet:
    """The Fernet of the ``position``-th key in ``ADAPTER_ENCRYPTION_KEYS``; a key that is none (cut off in a
    copy, or the blind-index key pasted in its place) is refused naming its place in the list, never its text:
    the error reaches terminals and logs, and a mistyped key is still most of a key."""
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
        pass
    raise KeysMissing(f"key {position} in {ENCRYPTION_KEYS_ENV} is not an encryption key: each is 44 characters "
                      "of URL-safe base64 as the first line of `stadspas-adapter keys generate` prints it, keys "
                      "separated by commas, newest first. Copy it again from your secret store; nothing was read "
                      "or written")


def _opens(fernet: Fernet | MultiFernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode("ascii"))
        return True
    except InvalidToken:
        return False


def request_fingerprint(hashes: KeyedHashes, endpoint: str, body: Mapping[str, Any]) -> str:
    """The keyed fingerprint of a money-moving request (the API's and the counter page's): what makes two requests
    the same, the endpoint and its body as canonical JSON. Stored with its idempotency record: a blind index of its
    own purpose over the text's SHA-256, which is what records made before it was keyed hold (migration 0010 keys
    those, so a till's retry across the upgrade still matches)."""
    canonical = json.dumps([endpoint, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keyed_request_hash(hashes, hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def keyed_request_hash(hashes: KeyedHashes, plain_hash: str) -> str:
    """``request_fingerprint`` from the SHA-256 (hex) of the canonical text."""
    return hashes.blind_index(plain_hash, "request")


def generate_encryption_key() -> str:
    return Fernet.generate_key().decode("ascii")


def generate_blind_index_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def vault_from_environment(data_dir: Path, *, development: bool) -> Vault:
    """Keys from the environment; in development, with neither set, generated dev keys kept in ``data_dir``.

    One key set without the other is refused in every environment: it is an operator's key with its partner
    forgotten, and falling back to dev keys would encrypt the city's data under keys nobody stored, beside the
    database, while the key the operator gave was ignored."""
    keys_text = os.environ.get(ENCRYPTION_KEYS_ENV, "").strip()
    index_key = os.environ.get(BLIND_INDEX_KEY_ENV, "").strip()
    if keys_text and index_key:
        return Vault([key.strip() for key in keys_text.split(",") if key.strip()], index_key)
    if keys_text or index_key:
        given, missing = ((ENCRYPTION_KEYS_ENV, BLIND_INDEX_KEY_ENV) if keys_text
                          else (BLIND_INDEX_KEY_ENV, ENCRYPTION_KEYS_ENV))
        raise KeysMissing(f"{given} is set but {missing} is not: set both (the pair `stadspas-adapter keys "
                          "generate` made, from your secret store); nothing was read or written")
    if not development:
        raise KeysMissing(
            f"{ENCRYPTION_KEYS_ENV} and {BLIND_INDEX_KEY_ENV} must be set outside development mode; "
            "create them with `stadspas-adapter keys generate` and store them in your secret store"
        )
    path = data_dir / DEV_KEYS_FILE
    log.warning("development mode without %s and %s: personal data is encrypted with demo keys kept in %s, "
                "beside the data. Never so with real cardholders: set environment: production and both keys",
                ENCRYPTION_KEYS_ENV, BLIND_INDEX_KEY_ENV, path)
    dev_keys = _load_or_create_dev_keys(path)
    return Vault(dev_keys["encryption_keys"], dev_keys["blind_index_key"])


def _load_or_create_dev_keys(path: Path) -> dict:
    if path.exists():
        return _read_dev_keys(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {"encryption_keys": [generate_encryption_key()], "blind_index_key": generate_blind_index_key()}
    # Written readable by the owner only; these protect the demo data in var/.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(keys, handle)
    return keys


def _read_dev_keys(path: Path) -> dict:
    """The dev keys in ``path``, or a refusal that says what to do. Never replaced by new ones: the demo data in
    ``data_dir`` is encrypted under these, and new keys would leave it unreadable for good."""
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__}): check its owner and permissions"
    except ValueError:  # not JSON, or not UTF-8. Its text is not shown: it quotes the file, which holds keys
        problem = "is not the JSON this adapter writes there"
    else:
        if _usable_dev_keys(keys):
            return keys
        problem = "does not hold the keys this adapter writes there"
    raise KeysMissing(f"the development keys file {path} {problem}. The demo data in {path.parent} is encrypted "
                      "with the keys it held: put the file back as it was, or, if that folder holds demo data only, "
                      "delete the file and the database beside it and run `make run` again for new demo data")


def _usable_dev_keys(keys: object) -> bool:
    if not (isinstance(keys, dict) and isinstance(keys.get("encryption_keys"), list)
            and isinstance(keys.get("blind_index_key"), str)):
        return False
    try:
        Vault(keys["encryption_keys"], keys["blind_index_key"])
    except (KeysMissing, AttributeError):  # AttributeError: a key that is no text
        return False
    return True


def _decode_index_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = b""
    if len(key) < 32:
        raise KeysMissing(f"{BLIND_INDEX_KEY_ENV} must be at least 32 random bytes, base64-encoded "
                          "(`stadspas-adapter keys generate` makes one)")
    return key
