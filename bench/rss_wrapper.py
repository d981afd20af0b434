"""Run a command, then report its peak RSS (``os.wait4``: exactly that child's rusage).

Usage: python -m bench.rss_wrapper CMD ARGS...; the command's output passes
through, and one more result line carries ``peak_rss_mb``. The wrapper is tiny,
so its own memory never mixes with the task's. When the task forks helpers (the
sync encrypts on all cores) and waits for them, ru_maxrss is the largest single
process of that tree, not their sum.
"""

from __future__ import annotations

import json
import os
import sys

from bench.measure import RESULT_PREFIX


def main(argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # the task
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    # The task's own result line came first; merge by printing a second, later one.
    print(RESULT_PREFIX + json.dumps({"peak_rss_mb": usage.ru_maxrss / 1024}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
