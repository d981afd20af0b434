"""Whether the configured keys are the ones the stored cardholders were written with.

The blind-index key (``ADAPTER_BLIND_INDEX_KEY``) keys every cardholder's BSN index and content hash. A sync
under another key (a fresh pair pasted in while rotating the encryption key, a restored backup with the wrong
secret) takes every cardholder for a changed one and cannot tell a child who returns under a new id by its BSN:
the guard then refuses the night as "too many changes", which sends the operator to the export instead of the key.

Nothing stores the key or a fingerprint of it, and the stored rows tell all the same: a cardholder's sealed
fields hold its BSN, and its ``bsn_index`` is that BSN's blind index under the key it was written with. A few
active rows are enough: a sync indexes all the cardholders of its export under one key, and a run that failed
wrote none. Only active ones: a cardholder gone from the export (missing, then inactive for years) keeps the index
it had, so after a key changed on purpose (one forced run) it would stand for the old key every night.

The same few rows show an encryption key gone missing (a new pair of keys instead of the stored ones, a lost
``var/dev-keys.json`` in development, an old key removed before ``keys rotate`` finished): their sealed fields
cannot be opened at all. A sync would then seal every cardholder it rewrites under the new key and leave the rest
unreadable for good, so it stops and says to put the key back.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.crypto import BLIND_INDEX_KEY_ENV, ENCRYPTION_KEYS_ENV, Vault
from adapter.models import Cardholder, HolderStatus
from adapter.personal import UnreadablePersonalData, open_sealed

SAMPLE = 5

KEY_CHANGED = (f"{BLIND_INDEX_KEY_ENV} is not the key the stored cardholders were indexed with: a sync would take "
               "every cardholder for a changed one and could not recognise a child by its BSN. Put the original "
               "key back (from where the keys are kept, or their backup). Only if the key was changed on purpose "
               "(it leaked), run the sync once with --force: it indexes every cardholder again under the new key")

ENCRYPTION_KEY_MISSING = (f"stored cardholders cannot be read with any key in {ENCRYPTION_KEYS_ENV}: the key they were "
                          "written with is missing (a new key pair instead of the stored one, a database restored "
                          "from a backup made before a key rotation whose old key was since removed, or a lost "
                          "var/dev-keys.json in development). Put that key back, after the newest, and run again; "
                          "`stadspas-adapter keys check` counts the rows")


class KeysMismatch(Exception):
    """The configured keys are not the ones the stored cardholders were written with (the message, ``KEY_CHANGED``
    or ``ENCRYPTION_KEY_MISSING``, says what to do)."""


def stored_keys_problem(session: Session, vault: Vault, source: str | None = None) -> str | None:
    """``ENCRYPTION_KEY_MISSING`` when a few stored active cardholders' sealed fields include one no configured key
    opens; ``KEY_CHANGED`` when none of their BSN indexes matches its BSN under the configured blind-index key;
    None when one does, or when no cardholder with a BSN is stored yet."""
    query = (select(Cardholder.personal_encrypted, Cardholder.bsn_index)
             .where(Cardholder.bsn_index.is_not(None), Cardholder.personal_encrypted.is_not(None),
                    Cardholder.status == HolderStatus.ACTIVE))
    if source is not None:
        query = query.where(Cardholder.source == source)
    mismatched = 0
    for token, stored_index in session.execute(query.order_by(Cardholder.id).limit(SAMPLE)):
        try:
            bsn = open_sealed(vault, token).bsn
        except InvalidToken:
            return ENCRYPTION_KEY_MISSING
        except UnreadablePersonalData:
            continue  # opened, but not personal fields: not a question of keys
        if bsn is None:
            continue
        if vault.blind_index(bsn) == stored_index:
            return None
        mismatched += 1
    return KEY_CHANGED if mismatched else None


def keys_open_none(session: Session, vault: Vault) -> bool:
    """Whether active cardholders are stored and no configured encryption key opens any of the few looked at: the
    keys are not this database's (a new pair, another installation's), and every balance check would fail. One
    unreadable row among readable ones is that row's matter (``keys check`` counts them), not the whole service's."""
    query = (select(Cardholder.personal_encrypted)
             .where(Cardholder.personal_encrypted.is_not(None), Cardholder.status == HolderStatus.ACTIVE)
             .order_by(Cardholder.id).limit(SAMPLE))
    looked_at = 0
    for (token,) in session.execute(query):
        looked_at += 1
        try:
            open_sealed(vault, token)
        except InvalidToken:
            continue
        except UnreadablePersonalData:
            pass  # opened, but not personal fields: the key is right
        return False
    return looked_at > 0
