"""The age bands the reports count children in, and a budget's band: the child's age on the budget's first day.

A budget's band is worked out when the grants open it (they hold the child's birth date then; migration 0011
did it for the budgets stored before) and kept on the budget (``Budget.age_band``), so that the uptake report
counts children per band in the database. Worked out at
every look, it decrypted every child's birth date: at 200,000 cardholders (372,000 budgets) the uptake report of
one year took 10 s and 450 MB in the web worker, two of every three seconds of a dashboard view.

A band is a code of a few characters, not an age: it says no more of a child than the report shows the council,
and less than many of the rules themselves (a budget of a rule for 4 to 11 year olds says as much).
"""

from __future__ import annotations

from datetime import date

from adapter.rules import age_on

# (youngest, oldest, code, label). Written out as labels, not "4-11": Dutch Excel opens a CSV cell "4-11" as the
# date 4 November. The codes are what a budget keeps; a label may change without touching the stored budgets.
BANDS = ((0, 3, "0-3", "0 t/m 3"), (4, 11, "4-11", "4 t/m 11"), (12, 17, "12-17", "12 t/m 17"),
         (18, 200, "18+", "18 en ouder"))
UNKNOWN = "unknown"  # no birth date (or one after the budget's first day)
UNKNOWN_LABEL = "onbekend"
LABELS = {code: label for _, _, code, label in BANDS} | {UNKNOWN: UNKNOWN_LABEL}


def band_of(birth_date: date | None, on: date) -> str:
    """The code of the band of a child born on ``birth_date``, by its age on ``on``."""
    if birth_date is None:
        return UNKNOWN
    age = age_on(birth_date, on)
    for youngest, oldest, code, _label in BANDS:
        if youngest <= age <= oldest:
            return code
    return UNKNOWN
