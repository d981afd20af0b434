"""Whether the configured blind-index key is the one the stored cardholders were indexed with.

The blind-index key (``ADAPTER_BLIND_INDEX_KEY``) keys every cardholder's BSN index and content hash. A sync
under another key (a fresh pair pasted in while rotating the encryption key, a restored backup with the wrong
secret) takes every cardholder for a changed one and cannot tell a child who returns under a new id by its BSN:
the guard then refuses the night as "too many changes", which sends the operator to the export instead of the key.

Nothing stores the key or a fingerprint of it, and the stored rows tell all the same: a cardholder's sealed
fields hold its BSN, and its ``bsn_index`` is that BSN's blind index under the key it was written with. A few
rows are enough: a sync indexes all of a source's cardholders under one key, and a run that failed wrote none.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.crypto import BLIND_INDEX_KEY_ENV, Vault
from adapter.models import Cardholder
from adapter.personal import UnreadablePersonalData, open_sealed

SAMPLE = 5

KEY_CHANGED = (f"{BLIND_INDEX_KEY_ENV} is not the key the stored cardholders were indexed with: a sync would take "
               "every cardholder for a changed one and could not recognise a child by its BSN. Put the original "
               "key back (from where the keys are kept, or their backup). Only if the key was changed on purpose "
               "(it leaked), run the sync once with --force: it indexes every cardholder again under the new key")


class BlindIndexKeyChanged(Exception):
    """The configured blind-index key did not index the stored cardholders (``KEY_CHANGED`` says what to do)."""


def blind_index_key_problem(session: Session, vault: Vault, source: str | None = None) -> str | None:
    """``KEY_CHANGED`` when none of a few stored cardholders' BSN indexes matches its BSN under the configured
    key; None when one does, or when no stored cardholder with a BSN can be read (none yet; or under an
    encryption key that is missing, which ``keys check`` names)."""
    query = (select(Cardholder.personal_encrypted, Cardholder.bsn_index)
             .where(Cardholder.bsn_index.is_not(None), Cardholder.personal_encrypted.is_not(None)))
    if source is not None:
        query = query.where(Cardholder.source == source)
    mismatched = 0
    for token, stored_index in session.execute(query.order_by(Cardholder.id).limit(SAMPLE)):
        try:
            bsn = open_sealed(vault, token).bsn
        except (InvalidToken, UnreadablePersonalData):
            continue
        if bsn is None:
            continue
        if vault.blind_index(bsn) == stored_index:
            return None
        mismatched += 1
    return KEY_CHANGED if mismatched else None
