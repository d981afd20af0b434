"""A cardholder's personal fields, stored as one encrypted token.

BSN, names and birth date travel together: the sync writes them together, and
every reader (the counter, grants, reports) needs one or two of them for a
cardholder it already holds. One ``MultiFernet`` token over all six costs one
encryption per cardholder instead of six, which is most of a first sync's work.

Inside the token is compact JSON with short keys; an empty field is left out.
``seal`` (with ``seal_values``) and ``open_sealed`` are the only code that knows this layout, so no
reader parses it by hand. Stored tokens and migration 0005 depend on it: a new
layout needs a migration that rewrites the tokens (a test pins this one). The keyed blind index (``bsn_index``) stays a column
of its own: look-ups by BSN must not decrypt anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import date
from json.encoder import encode_basestring
from operator import attrgetter

from adapter.crypto import Vault
from adapter.records import CardholderRecord

# Short keys keep the token small: Fernet's ciphertext grows with the plaintext.
_KEYS = {"bsn": "b", "first_names": "f", "initials": "i", "surname_prefix": "p", "surname": "s",
         "birth_date": "d"}
_NAMES = {short: name for name, short in _KEYS.items()}


class UnreadablePersonalData(ValueError):
    """A token decrypted, but its contents are not personal fields. Worded without any stored value."""


@dataclass(frozen=True, slots=True)
class PersonalFields:
    """The personal fields of one cardholder. repr() shows no value: this may end up in an error."""

    bsn: str | None = field(default=None, repr=False)
    first_names: str | None = field(default=None, repr=False)
    initials: str | None = field(default=None, repr=False)
    surname_prefix: str | None = field(default=None, repr=False)
    surname: str | None = field(default=None, repr=False)
    birth_date: date | None = field(default=None, repr=False)

    @classmethod
    def of(cls, record: CardholderRecord) -> PersonalFields:
        return cls(*personal_values(record))


EMPTY = PersonalFields()
# Each field's short key as it opens its member of the token's JSON, in the fields' order (personal_values'):
# the texts, then the birth date, the last, which _dumps writes apart (it is a date).
*_TEXT_MEMBERS, _BIRTH_MEMBER = (f'"{_KEYS[personal_field.name]}":' for personal_field in fields(PersonalFields))
# A record's personal fields as a plain tuple, in PersonalFields' order: ``PersonalFields(*personal_values(r))``.
# A tuple is what the sync's sealer sends to its workers (cheaper to pickle than the dataclass).
personal_values = attrgetter(*(personal_field.name for personal_field in fields(PersonalFields)))


def seal(vault: Vault, personal: PersonalFields) -> str | None:
    """One token over every field; None when there is nothing to hide (so erased rows stay NULL)."""
    return seal_values(vault, personal_values(personal))


def seal_values(vault: Vault, values: tuple) -> str | None:
    """``seal`` of ``PersonalFields(*values)``, without making one: the sync's sealer runs this once per new or
    changed cardholder, from the tuple it is handed (``personal_values``)."""
    packed = _dumps(values)
    return None if packed is None else vault.encrypt(packed)


def open_sealed(vault: Vault, token: str | None) -> PersonalFields:
    """The fields in a token written by ``seal``; no token means no personal data."""
    if token is None:
        return EMPTY
    return _loads(vault.decrypt(token) or "")


def _dumps(values: tuple) -> str | None:
    """The token's JSON for ``personal_values``' tuple, or None when every field is empty. Exactly what
    ``json.dumps`` of the short-keyed dict without its empty fields writes (``ensure_ascii=False``, no
    spaces; a test holds the two equal), built here from the C-coded string escaper: a first sync seals
    every cardholder, and a dict through the encoder took three times as long (4.0 vs 1.4 us a row)."""
    *texts, birth = values
    members = [member + encode_basestring(value) for member, value in zip(_TEXT_MEMBERS, texts) if value is not None]
    if birth is not None:
        members.append(f'{_BIRTH_MEMBER}"{birth.isoformat()}"')
    return "{" + ",".join(members) + "}" if members else None


def _loads(text: str) -> PersonalFields:
    # A JSON or date error carries the decrypted text (JSONDecodeError.doc, the message): it is dropped
    # before raising, not merely hidden with "from None", which still keeps it as __context__.
    try:
        packed = json.loads(text)
        if not isinstance(packed, dict):
            raise TypeError
        values = {_NAMES[short]: value for short, value in packed.items() if short in _NAMES}
        if any(not isinstance(value, str) for value in values.values()):
            raise TypeError
        if "birth_date" in values:
            values["birth_date"] = date.fromisoformat(values["birth_date"])
        return PersonalFields(**values)
    except (ValueError, TypeError):
        pass
    raise UnreadablePersonalData("a stored personal token decrypted but does not hold personal fields")
