"""Finding a cardholder by BSN without storing or searching the BSN in clear text.

The BSN is looked up through its blind index (a keyed HMAC, see
``adapter.crypto``): the database compares two hashes and never sees the number.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapter.crypto import Vault
from adapter.models import Cardholder, HolderStatus


class NotABsn(ValueError):
    """The text is not 8 or 9 digits; the message never repeats the text."""


def normalise_bsn(bsn: str) -> str:
    """Nine digits. Spreadsheets drop the leading zero of a BSN, so 8 digits are left-padded."""
    digits = bsn.strip().replace(".", "").replace(" ", "")
    if not (digits.isascii() and digits.isdigit() and len(digits) in (8, 9)):
        raise NotABsn("a BSN has 9 digits (or 8 when a spreadsheet dropped the leading zero)")
    return digits.zfill(9)


def find_cardholder_by_bsn(session: Session, vault: Vault, bsn: str) -> Cardholder | None:
    """The cardholder with this BSN: an active one first, else the most recently created."""
    index = vault.blind_index(normalise_bsn(bsn))
    found = session.execute(select(Cardholder).where(Cardholder.bsn_index == index)).scalars().all()
    if not found:
        return None
    return max(found, key=lambda holder: (holder.status == HolderStatus.ACTIVE, holder.id))
