"""Made-up stadspas exports at any size, in the formats the demo mappings read.

Used by the bench and by municipalities sizing a deployment: households of one
or two adults and one to four children, 11-proof BSNs in a clearly fake range,
names with the diacritics real exports carry, about 1% blocked and 0.5%
replaced passes. ``next_night=True`` gives the same population with about 1%
of the rows changed, as the following night's export would.

Deterministic: the same seed and pass year give byte-identical output. Output
is streamed: only one household (CSV) or one page (SOAP, REST) is in memory.

Formats (``mappings/demo-*.yaml``):
* csv  - one file, semicolon, Windows-1252, one row per pass;
* soap - a folder of ``page-N.xml`` answers of ``zoekPashouders`` (the sample
         WSDL), ``indicatorVervolgvraag`` true on all but the last page;
* rest - a folder of ``pashouders-offset-N.json`` pages (total/offset/limit),
         as the PASS/GPASS-style API answers.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

Format = Literal["csv", "soap", "rest"]
FORMATS: tuple[Format, ...] = ("csv", "soap", "rest")

BLOCKED_SHARE = 0.01
REPLACED_SHARE = 0.005
CHANGED_SHARE = 0.01
# Spreadsheets drop the leading zero of these BSNs (see mappings/demo-csv.yaml).
LOST_ZERO_SHARE = 0.02
# Four times the largest size the bench runs. The fake BSN ranges below hold every person of this many
# households (at most six each): a larger export would run out of BSNs halfway through writing.
MAX_HOUSEHOLDS = 1_000_000

CSV_COLUMNS = ("Huishoudnummer", "Klantnummer", "BSN", "Voornamen", "Voorvoegsel", "Achternaam",
               "Geboortedatum", "Pasnummer", "Status", "Geldig vanaf", "Geldig tot", "Categorie")
CSV_STATUS = {"active": "Actief", "blocked": "Geblokkeerd", "replaced": "Vervangen"}
SOAP_STATUS = {"active": "actief", "blocked": "geblokkeerd", "replaced": "vervangen"}

# Every character here exists in Windows-1252 (the CSV encoding).
_FIRST_NAMES_CHILD = (
    "Zoë", "Noël", "Chloé", "Anaïs", "Loïs", "Daniël", "Joël", "Noëlla", "Björn", "François", "Mohammed",
    "Fatima", "Sem", "Daan", "Lotte", "Ayoub", "Yasmina", "Sofie", "Eliëtte", "Raphaël", "Inès", "Mila",
    "Amélie", "Jaël", "Gaël", "Jörgen", "Thijs", "Saskia", "Dewi", "Ilyas",
)
_FIRST_NAMES_ADULT = (
    "Anouk", "René", "Mariëlle", "Daniëlle", "Jérôme", "Ilse", "Hüseyin", "Françoise", "Gökhan", "Ingrid",
    "Karim", "Naïma", "Özlem", "Priya", "Rachid", "Sjoerd", "Noëmi", "Hélène", "Çağla", "Wendy",
)
_SURNAMES = (
    ("de", "Vries"), ("van", "Dijk"), ("van der", "Berg"), ("", "Janssen"), ("", "Bakker"),
    ("", "El Amrani"), ("", "Öztürk"), ("", "Çelik"), ("", "Müller"), ("de", "Boër"),
    ("", "Ramdin"), ("van den", "Broëk"), ("", "Jansen"), ("", "Visser"), ("", "Smit"),
    ("", "Meijer"), ("ter", "Horst"), ("", "Doğan"), ("", "Lefèvre"), ("", "Nguyen"),
)
# ğ is not in Windows-1252: keep names encodable by replacing it the way exports do.
_CP1252_FALLBACK = str.maketrans({"ğ": "g"})


# -- BSNs -------------------------------------------------------------------------

def bsn_check_digit(first_eight: str) -> int | None:
    """The 9th digit that makes ``first_eight`` 11-proof, or None when there is none."""
    total = sum((9 - position) * int(digit) for position, digit in enumerate(first_eight))
    check = total % 11
    return None if check == 10 else check


def _eleven_proof_numbers(prefixes: Iterable[str]) -> Iterator[str]:
    """Every 11-proof number under each prefix in turn, in order: unique, streamed, never a list."""
    for prefix in prefixes:
        free = 8 - len(prefix)
        for middle in range(10 ** free):
            first_eight = f"{prefix}{middle:0{free}d}"
            check = bsn_check_digit(first_eight)
            if check is not None:
                yield f"{first_eight}{check}"


class _BsnSource:
    """Hands out each fake BSN once: one person, one BSN, as in the BRP.

    The main range starts at 99xxxxxxx (the BRP test numbers start with 9999 too, so
    nobody mistakes them for real ones) and continues below it for very large sizes;
    0999xxxxx and below have a leading zero a spreadsheet drops (8 digits in the export).
    Each range holds about 909,000 numbers per leading digit pair: 9.1 million plain ones,
    0.9 million with a leading zero (2% of the people of MAX_HOUSEHOLDS need about 80,000).
    """

    def __init__(self) -> None:
        self._plain = _eleven_proof_numbers(f"9{second}" for second in "9876543210")
        self._leading_zero = _eleven_proof_numbers(f"0{middle}" for middle in range(999, 899, -1))

    def next(self, lost_leading_zero: bool) -> str:
        return next(self._leading_zero if lost_leading_zero else self._plain)


# -- the population ------------------------------------------------------------

@dataclass(frozen=True)
class PassCard:
    number: str
    status: str  # active | blocked | replaced
    valid_from: date
    valid_until: date
    replaces: str | None = None


@dataclass(frozen=True)
class Person:
    person_id: str
    bsn: str  # always 9 digits here; the CSV writer drops the leading zero
    first_names: str
    surname_prefix: str
    surname: str
    birth_date: date
    is_child: bool
    passes: tuple[PassCard, ...]


@dataclass(frozen=True)
class HouseholdData:
    household_id: str
    members: tuple[Person, ...] = field(default_factory=tuple)

    @property
    def row_count(self) -> int:
        return sum(len(member.passes) for member in self.members)


def current_pass_year(today: date | None = None) -> int:
    """The pass year runs 1 August to 31 July; it is named after the year it starts."""
    today = today or date.today()
    return today.year if today.month >= 8 else today.year - 1


def iter_households(households: int, *, seed: int = 1, pass_year: int | None = None,
                    next_night: bool = False) -> Iterator[HouseholdData]:
    """``households`` made-up households, one at a time.

    With ``next_night`` the same households come out with about 1% of their
    rows changed; the base population does not depend on it (separate random streams).
    """
    pass_year = pass_year if pass_year is not None else current_pass_year()
    population = random.Random(f"stadspas-population-{seed}")
    changes = random.Random(f"stadspas-next-night-{seed}")
    pass_counter = 0
    bsns = _BsnSource()
    for index in range(1, households + 1):
        household, pass_counter = _household(population, index, pass_year, pass_counter, bsns)
        if next_night:
            household = _next_night(changes, household, pass_year)
        yield household


def _household(rng: random.Random, index: int, pass_year: int, pass_counter: int,
               bsns: _BsnSource) -> tuple[HouseholdData, int]:
    prefix, surname = rng.choice(_SURNAMES)
    adult_count = rng.choice((1, 2))
    child_count = rng.randint(1, 4)
    members = []
    for member in range(adult_count + child_count):
        is_child = member >= adult_count
        age = rng.randint(4, 17) if is_child else rng.randint(24, 58)
        birth_date = date(pass_year - age, 1, 1) + timedelta(days=rng.randrange(365))
        bsn = bsns.next(lost_leading_zero=rng.random() < LOST_ZERO_SHARE)
        first_names = rng.choice(_FIRST_NAMES_CHILD if is_child else _FIRST_NAMES_ADULT)
        passes, pass_counter = _passes(rng, pass_year, pass_counter)
        members.append(Person(
            person_id=f"P{index:07d}-{member + 1}", bsn=bsn, first_names=first_names.translate(_CP1252_FALLBACK),
            surname_prefix=prefix, surname=surname.translate(_CP1252_FALLBACK), birth_date=birth_date,
            is_child=is_child, passes=passes))
    return HouseholdData(f"H{index:07d}", tuple(members)), pass_counter


def _pass_number(counter: int) -> str:
    return f"60643660{counter:08d}"


def _passes(rng: random.Random, pass_year: int, pass_counter: int) -> tuple[tuple[PassCard, ...], int]:
    valid_from, valid_until = date(pass_year, 8, 1), date(pass_year + 1, 7, 31)
    pass_counter += 1
    first = PassCard(_pass_number(pass_counter), "active", valid_from, valid_until)
    draw = rng.random()
    if draw < REPLACED_SHARE:
        # A lost card: the old number is replaced, the new one carries the budget on.
        pass_counter += 1
        replaced_on = valid_from + timedelta(days=rng.randint(14, 200))
        new = PassCard(_pass_number(pass_counter), "active", replaced_on, valid_until, replaces=first.number)
        return (replace(first, status="replaced"), new), pass_counter
    if draw < REPLACED_SHARE + BLOCKED_SHARE:
        return (replace(first, status="blocked"),), pass_counter
    return (first,), pass_counter


def _next_night(rng: random.Random, household: HouseholdData, pass_year: int) -> HouseholdData:
    members = []
    for person in household.members:
        # One draw per pass row, so the changed share is per row, like the export.
        passes = []
        person_changed = False
        for card in person.passes:
            if rng.random() >= CHANGED_SHARE:
                passes.append(card)
                continue
            kind = rng.choice(("block", "extend", "rename"))
            if kind == "block" and card.status == "active":
                passes.append(replace(card, status="blocked"))
            elif kind == "extend" or kind == "block":
                passes.append(replace(card, valid_until=card.valid_until + timedelta(days=31)))
            else:
                passes.append(card)
                person_changed = True
        if person_changed:
            person = replace(person, first_names=f"{person.first_names} Maria")
        members.append(replace(person, passes=tuple(passes)))
    return replace(household, members=tuple(members))


# -- writers --------------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    households: int
    rows: int  # pass rows = canonical records the mapping makes
    files: int


class OutputPathError(ValueError):
    """``out`` cannot take this format's export; the message says what to give instead."""


# The files each paged format writes: an earlier, larger export's pages would otherwise stay beside the new ones.
PAGE_FILES = {"soap": "page-*.xml", "rest": "pashouders-offset-*.json"}


def write(fmt: Format, out: Path, households: int, *, seed: int = 1, pass_year: int | None = None,
          next_night: bool = False, page_size: int = 200) -> Written:
    """Write an export of ``households`` households to ``out`` (a file for csv, a folder otherwise).

    A folder for soap or rest ends up holding this export's pages only: pages an earlier export left there
    are removed first, so nothing reading the folder mixes two exports.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0 <= households <= MAX_HOUSEHOLDS:
        raise ValueError(f"{households} households: the generator makes 0 to {MAX_HOUSEHOLDS:,}")
    _check_output_path(fmt, out)
    population = iter_households(households, seed=seed, pass_year=pass_year, next_night=next_night)
    if fmt == "csv":
        return write_csv(population, out)
    for stale in out.glob(PAGE_FILES[fmt]) if out.is_dir() else ():
        stale.unlink()
    if fmt == "soap":
        return write_soap_pages(population, out, page_size=page_size)
    return write_rest_pages(population, out, households, page_size=page_size)


def _check_output_path(fmt: Format, out: Path) -> None:
    if fmt == "csv" and out.is_dir():
        raise OutputPathError(f"{out} is a folder, and --format csv writes one file; give a file name, "
                              f"e.g. {out / 'stadspas.csv'}")
    if fmt != "csv" and out.exists() and not out.is_dir():
        raise OutputPathError(f"{out} is a file, and --format {fmt} writes a folder of pages; give a folder "
                              "(it is created when it does not exist)")
    existing = next((parent for parent in out.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"{existing} is a file, so {out} cannot be made inside it; give another path")


def _csv_date(day: date) -> str:
    return day.strftime("%d-%m-%Y")


def write_csv(population: Iterator[HouseholdData], out: Path) -> Written:
    out.parent.mkdir(parents=True, exist_ok=True)
    households = rows = 0
    with out.open("w", encoding="cp1252", newline="") as stream:
        writer = csv.writer(stream, delimiter=";", lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for household in population:
            households += 1
            for person in household.members:
                # Excel's round-trip: 099991234 becomes 99991234.
                bsn = person.bsn.lstrip("0") if person.bsn.startswith("0") else person.bsn
                for card in person.passes:
                    rows += 1
                    writer.writerow((
                        household.household_id, person.person_id, bsn, person.first_names,
                        person.surname_prefix, person.surname, _csv_date(person.birth_date), card.number,
                        CSV_STATUS[card.status], _csv_date(card.valid_from), _csv_date(card.valid_until),
                        "K" if person.is_child else "M"))
    return Written(households, rows, 1)


_SOAP_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
              '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">\n'
              '  <soap:Body>\n    <sp:zoekPashoudersAntwoord xmlns:sp="urn:example:stadspas:v1">')
_SOAP_TAIL = "</sp:zoekPashoudersAntwoord>\n  </soap:Body>\n</soap:Envelope>\n"


def _soap_household(household: HouseholdData) -> str:
    parts = [f"<sp:huishouden><sp:huishoudnummer>{household.household_id}</sp:huishoudnummer>"]
    for person in household.members:
        parts.append(
            f"<sp:lid><sp:persoonsnummer>{person.person_id}</sp:persoonsnummer><sp:bsn>{person.bsn}</sp:bsn>"
            f"<sp:voornamen>{escape(person.first_names)}</sp:voornamen>")
        if person.surname_prefix:
            parts.append(f"<sp:voorvoegsel>{escape(person.surname_prefix)}</sp:voorvoegsel>")
        parts.append(f"<sp:geslachtsnaam>{escape(person.surname)}</sp:geslachtsnaam>"
                     f"<sp:geboortedatum>{person.birth_date:%Y%m%d}</sp:geboortedatum>")
        for card in person.passes:
            parts.append(
                f"<sp:pas><sp:pasnummer>{card.number}</sp:pasnummer><sp:status>{SOAP_STATUS[card.status]}"
                f"</sp:status><sp:categorie>{'K' if person.is_child else 'M'}</sp:categorie>"
                f"<sp:geldigVanaf>{card.valid_from.isoformat()}</sp:geldigVanaf>"
                f"<sp:geldigTotEnMet>{card.valid_until.isoformat()}</sp:geldigTotEnMet>")
            if card.replaces:
                parts.append(f"<sp:vervangtPasnummer>{card.replaces}</sp:vervangtPasnummer>")
            parts.append("</sp:pas>")
        parts.append("</sp:lid>")
    parts.append("</sp:huishouden>")
    return "".join(parts)


def _pages(population: Iterator[HouseholdData], page_size: int) -> Iterator[tuple[list[HouseholdData], bool]]:
    """Pages of ``page_size`` households, each with whether more follow (one page of look-ahead)."""
    page: list[HouseholdData] = []
    for household in population:
        if len(page) == page_size:
            yield page, True
            page = []
        page.append(household)
    yield page, False


def write_soap_pages(population: Iterator[HouseholdData], out: Path, *, page_size: int = 200) -> Written:
    """``page-1.xml``...: what ``zoekPashouders`` answers for pagina 1, 2, ... (maximumAantal = page_size)."""
    out.mkdir(parents=True, exist_ok=True)
    households = rows = files = 0
    for page, more in _pages(population, page_size):
        files += 1
        body = "".join(_soap_household(household) for household in page)
        flag = f"<sp:indicatorVervolgvraag>{'true' if more else 'false'}</sp:indicatorVervolgvraag>"
        (out / f"page-{files}.xml").write_bytes((_SOAP_HEAD + body + flag + _SOAP_TAIL).encode("utf-8"))
        households += len(page)
        rows += sum(household.row_count for household in page)
    return Written(households, rows, files)


def _utc_end_of_day(day: date) -> str:
    # PASS/GPASS sends the local end of day as a UTC instant (CEST +2, CET +1).
    offset = 2 if 4 <= day.month <= 9 else 1
    return f"{day.isoformat()}T{24 - offset - 1:02d}:59:59Z"


def _rest_person(person: Person, person_number: int, pass_ids: Iterator[int]) -> dict:
    first_names = person.first_names
    return {
        "id": person_number, "voornaam": first_names, "initialen": f"{first_names[0]}.",
        "tussenvoegsel": person.surname_prefix or None, "achternaam": person.surname,
        "geboortedatum": person.birth_date.isoformat(),
        "passen": [{
            "id": next(pass_ids), "pasnummer": int(card.number[-8:]), "pasnummer_volledig": card.number,
            "categorie": "Kind" if person.is_child else "Minimafonds",
            "categorie_code": "K" if person.is_child else "M",
            "actief": card.status == "active", "expiry_date": _utc_end_of_day(card.valid_until),
            "vervangen": card.status == "replaced",
            "originele_pas": {"pasnummer_volledig": card.replaces} if card.replaces else None,
            "budgetten": [],
        } for card in person.passes],
        "sub_pashouders": [],
    }


def write_rest_pages(population: Iterator[HouseholdData], out: Path, total: int, *,
                     page_size: int = 100) -> Written:
    """``pashouders-offset-N.json``: one main holder per household, the others in sub_pashouders."""
    out.mkdir(parents=True, exist_ok=True)
    households = rows = files = 0
    person_numbers = iter(range(1, 1 << 62))
    pass_ids = iter(range(1, 1 << 62))
    for page, _more in _pages(population, page_size):
        items = []
        for household in page:
            main, *others = household.members
            holder = _rest_person(main, next(person_numbers), pass_ids)
            holder["sub_pashouders"] = [_rest_person(other, next(person_numbers), pass_ids) for other in others]
            items.append(holder)
            rows += household.row_count
        document = {"total": total, "offset": households, "limit": page_size, "pashouders": items}
        (out / f"pashouders-offset-{households}.json").write_text(
            json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        households += len(page)
        files += 1
    return Written(households, rows, files)


def households_for_rows(rows: int) -> int:
    """About how many households make ``rows`` pass rows (1.5 adults + 2.5 children, plus replacements)."""
    return max(1, round(rows / (4.0 * (1 + REPLACED_SHARE))))
