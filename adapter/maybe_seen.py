"""Which keys a sync may have read already, in a fixed amount of memory: a Bloom filter.

The planner asks of every line of a first sync whether its pass number, cardholder id
and BSN were read before. A table of every key read answers exactly, at a few hundred
bytes a line: 400 MB for a city of a million. This filter answers in a fixed 8 MB:
"no" is certain, "maybe" is not. A line whose keys are all certainly new is judged at
once, as before; the few "maybe" lines wait until the reading is done, and are judged
then against exact tables of just their keys (``adapter.sync_plan``). A wrong "maybe"
costs a line its wait, never a wrong judgement.

Keys are hashed with Python's own ``hash()``: cached on each string, and keyed per
process (unless PYTHONHASHSEED is fixed), so an export cannot be crafted to fill the filter;
and a filled filter only makes lines wait.
"""

from __future__ import annotations

import mmap
from collections.abc import Hashable

# 2**26 bits (8 MB): over a million lines (three keys each) about one look-up in 800 says "maybe" wrongly,
# one in 250 once all three million keys are in; beyond a few million lines waiting lines become many.
BITS_LOG2 = 26
# Mixed into a key's hash by its kind (a pass number, a cardholder id, ...): the same text as two kinds of key
# (a household named by its main holder's id, as the PASS/GPASS mapping does) is two keys, not one seen twice.
_KIND_SALTS = (0, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


class MaybeSeen:
    """A Bloom filter of three probes a key, all in one 64-bit word (one memory access a key).

    ``seen_before(key, kind)`` adds the key and says whether it may have been added before, as that kind
    (0 to 3): False only if it never was. Asking and adding are one step because every key the planner asks
    about is one it enters.
    """

    def __init__(self, bits_log2: int = BITS_LOG2):
        if not 6 <= bits_log2 <= 40:
            raise ValueError(f"bits_log2 must be 6..40, got {bits_log2}")
        self._word_mask = (1 << (bits_log2 - 6)) - 1
        # An anonymous mapping: its pages are the kernel's shared zero page until written, so a sync that adds
        # few keys (a nightly one) takes little of the 8 MB. (An array of zeros would write them all at once.)
        self._words = memoryview(mmap.mmap(-1, 1 << (bits_log2 - 3))).cast("Q")

    def seen_before(self, key: Hashable, kind: int = 0) -> bool:
        # The word from the hash's low bits, the three bits within it from its top 18 (Python's hash of a
        # string or bytes is 64 bits on the platforms we run on). A repeated bit only makes the key's
        # pattern sparser: "maybe" more often, never a wrong "no".
        hashed = hash(key) ^ _KIND_SALTS[kind]
        pattern = (1 << ((hashed >> 46) & 63)) | (1 << ((hashed >> 52) & 63)) | (1 << ((hashed >> 58) & 63))
        index = hashed & self._word_mask
        words = self._words
        word = words[index]
        if word & pattern == pattern:
            return True
        words[index] = word | pattern
        return False
