"""The personal data our fixtures use, in one place, and a scanner that finds it in text.

Factories and tests take their BSNs, surnames and pass numbers from here, so the
session-wide log check (tests/log_capture_plugin.py) and the at-rest checks know
exactly what must never appear in clear text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Published for the BRP test environments (all 11-proof); never real people.
TEST_BSNS = (
    "999993653", "999993847", "999992077", "999993483", "999990482", "000009921",
    "999995017", "999990408", "999994669", "999992806", "999993926",
)
# Every surname fixtures and the demo data use (adapter/demo.py holds "El Amrani" and "de Vries").
FIXTURE_SURNAMES = ("Jansen", "El Amrani", "de Vries", "Vries", "Bakker", "Öztürk")
# Birth dates used by fixtures and the demo data, as stored (ISO).
FIXTURE_BIRTH_DATES = ("2015-05-05", "1984-03-02", "2014-09-14", "2017-01-30", "1990-06-21", "2012-11-05",
                       "2019-04-18", "1981-10-09", "2013-05-27", "1992-12-01", "2010-02-03")
# Pass numbers in the demo data; factories add theirs to ISSUED_PASS_NUMBERS as they make them.
DEMO_PASS_NUMBERS = tuple(f"6400000000000{suffix}" for suffix in ("011", "029", "037", "045", "052", "060", "078",
                                                                    "086", "094", "102"))
ISSUED_PASS_NUMBERS: set[str] = set(DEMO_PASS_NUMBERS)
# Factories number their passes like this; a full one of these in a log line is a leak.
FACTORY_PASS_NUMBER = re.compile(r"(?<!\d)64100000\d{8}(?!\d)")
_LONG_DIGIT_RUN = re.compile(r"(?<!\d)\d{10,19}(?!\d)")


def issue_pass_number(number: int) -> str:
    # 6410...: apart from the demo export's 6400... numbers, so the two never collide in one database.
    pass_number = f"64100000{number:08d}"
    ISSUED_PASS_NUMBERS.add(pass_number)
    return pass_number


def find_personal_data(text: str, *, extra_pass_numbers: Iterable[str] = ()) -> list[str]:
    """Every fixture BSN, surname and full pass number found in ``text``, each once, described."""
    found = [f"BSN {bsn}" for bsn in TEST_BSNS if bsn in text]
    found += [f"surname {surname!r}" for surname in FIXTURE_SURNAMES if surname in text]
    known = ISSUED_PASS_NUMBERS | set(extra_pass_numbers)
    pass_numbers = {run for run in _LONG_DIGIT_RUN.findall(text) if run in known or FACTORY_PASS_NUMBER.match(run)}
    found += [f"pass number {number}" for number in sorted(pass_numbers)]
    return found


def find_personal_data_at_rest(blob: bytes) -> list[str]:
    """For a database file or dump: BSNs, surnames and birth dates in clear text (UTF-8)."""
    found = [f"BSN {bsn}" for bsn in TEST_BSNS if bsn.encode() in blob]
    found += [f"surname {surname!r}" for surname in FIXTURE_SURNAMES if surname.encode() in blob]
    found += [f"birth date {day}" for day in FIXTURE_BIRTH_DATES if day.encode() in blob]
    return found
