"""Each target of a bench run beside the newest earlier run of this branch that measured it: what got slower.

A run's targets are ratios against floors measured in the same run, so two runs on different days compare
better than their seconds do. Still, the machine is shared: the same code measured 4.98x and then 6.45x of its
floor half an hour apart. So a target is called worse or better only when the spread of its runs now and
the spread then do not overlap (each run's figure over its own floor where the floors were measured run by run,
else over the floors' extremes) and its value moved by at least ``MATERIAL`` (5%); any other move is reported as
a move, not as a verdict.

"Earlier" follows the git history back from the parent of the commit measured, and takes for each target the
first result file that measured it with the same sizes (rows, scaling sizes, workers, load). Results of the
commit itself are left out: a result file says on which day it was made, not at what hour, so of two runs of
one commit neither is known to be the earlier. Without git, nothing is compared. A "worse" is worth a second
run before its cause is looked for: a busy machine can move one part of a run and not its floors.

    python -m bench.compare NEW.json [--with OLD.json] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import measured_beside_each_run, since_lines

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# What a target's value depends on besides the code: runs with other values measure other things.
SIZES = ("rows", "soap_rows", "scaling", "workers", "load_seconds", "api_passes", "smoke")
_HISTORY_DEPTH = 1000  # commits looked back through
# A move smaller than this share of the earlier value is never called worse or better: a peak RSS, say, is so
# steady from run to run that its spreads part over a megabyte (97.9 MB, then 99.1 MB).
MATERIAL = 0.05

Result = dict[str, Any]


@dataclass(frozen=True)
class Compared:
    """One target now and in the earlier result that measured it."""

    key: str
    description: str
    now: float
    then: float
    earlier: str  # the earlier result's file name
    verdict: str  # "worse", "better", or why neither (see ``verdict``)

    @property
    def change(self) -> float:
        return relative_change(self.now, self.then)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "description": self.description, "now": self.now, "then": self.then,
                "change": self.change, "earlier": self.earlier, "verdict": self.verdict}


def spread(result: Result, target: dict[str, Any]) -> tuple[float, float] | None:
    """The lowest and highest value ``target`` could have taken from the runs behind it, or None when its
    figures do not say. Ratios: each run over its own floor where the floors were measured beside each run,
    else over the floors' extremes; a peak RSS or a p99 latency: its own extremes."""
    figures = result["figures"]
    names = target["figures"]
    parts = [figures.get(name) or {} for name in names]
    if not all(part.get("available") for part in parts):
        return None
    key = target["key"]
    if key.startswith("p99_"):
        return _extremes(parts[0].get("p99_ms"))
    if key == "scaling_peak_rss":
        return _extremes(parts[0].get("peak_rss_mb"))
    if key == "scaling_rss_flat":
        top, bottom = _extremes(parts[0].get("peak_rss_mb")), _extremes(parts[1].get("peak_rss_mb"))
        if top is None or bottom is None or not bottom[0]:
            return None
        return top[0] / bottom[1], top[1] / bottom[0]
    top_runs, floors = parts[0].get("runs") or [], parts[1:]
    if not top_runs or not floors:
        return None
    if all(measured_beside_each_run(name) and len(floor.get("runs") or []) == len(top_runs)
           for name, floor in zip(names[1:], floors)):
        ratios = [value / sum(floor["runs"][run] for floor in floors) for run, value in enumerate(top_runs)]
        return min(ratios), max(ratios)
    return min(top_runs) / sum(floor["max"] for floor in floors), max(top_runs) / sum(floor["min"] for floor in floors)


def relative_change(now: float, then: float) -> float:
    return now / then - 1.0 if then else float("inf")


def _extremes(summary: dict[str, float] | None) -> tuple[float, float] | None:
    return None if not summary else (summary["min"], summary["max"])


def verdict(direction: str, now: tuple[float, float] | None, then: tuple[float, float] | None,
            change: float = 1.0) -> str:
    """"worse" or "better" when the spreads do not overlap and the value moved by at least ``MATERIAL`` of itself
    (``change``: the relative move of the target's value); else (or without a spread) no verdict."""
    if abs(change) < MATERIAL:
        return f"less than {MATERIAL:.0%} apart"
    if now is None or then is None:
        return "no spread to judge by"
    lower_is_better = direction == "<="
    if now[0] > then[1]:
        return "worse" if lower_is_better else "better"
    if now[1] < then[0]:
        return "better" if lower_is_better else "worse"
    return "within the runs' spread"


def same_sizes(one: Result, other: Result) -> bool:
    first, second = one["meta"].get("config", {}), other["meta"].get("config", {})
    return all(_plain(first.get(name)) == _plain(second.get(name)) for name in SIZES)


def _plain(size: object) -> object:
    """A size as a file holds it: a run's own result has tuples where its file has lists."""
    return list(size) if isinstance(size, tuple) else size


def compare(result: Result, earlier: Iterable[tuple[str, Result]]) -> list[Compared]:
    """Each measured target of ``result`` beside the first of ``earlier`` (name, result), newest first, that
    measured the same target with the same sizes."""
    candidates = [(name, old) for name, old in earlier if same_sizes(result, old)]
    found: list[Compared] = []
    for target in result.get("targets", []):
        if target.get("value") is None:
            continue
        for name, old in candidates:
            before = next((old_target for old_target in old.get("targets", [])
                           if old_target["key"] == target["key"] and old_target["description"] == target["description"]
                           and old_target.get("value") is not None), None)
            if before is None:
                continue
            found.append(Compared(target["key"], target["description"], target["value"], before["value"], name,
                                  verdict(target["direction"], spread(result, target), spread(old, before),
                                          relative_change(target["value"], before["value"]))))
            break
    return found


def history(commit: str) -> list[str] | None:
    """The commits before ``commit`` (its ancestors, newest first, as full hashes), or None without git, outside
    a repository, or when git does not know ``commit``."""
    try:
        listed = subprocess.run(["git", "rev-list", f"--max-count={_HISTORY_DEPTH}", f"{commit}^"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return listed.split()


def earlier_results(commits: Sequence[str], folders: Iterable[Path], *, leave_out: Path | None = None
                    ) -> list[tuple[str, Result]]:
    """The result files in ``folders`` whose commit is one of ``commits``, in the order of ``commits``; of one
    commit, the newest file name first (a second run is named after the first, with a suffix or a later date)."""
    by_commit: dict[str, list[tuple[str, Result]]] = {}
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(folder.glob("*.json"), reverse=True):
            resolved = path.resolve()
            if resolved in seen or (leave_out is not None and resolved == leave_out.resolve()):
                continue
            seen.add(resolved)
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
                commit = result["meta"]["commit"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a result file
            by_commit.setdefault(commit, []).append((path.name, result))
    ordered: list[tuple[str, Result]] = []
    for full in commits:
        for short, results in by_commit.items():
            if short and full.startswith(short):
                ordered.extend(results)
    return ordered


def since_earlier(result: Result, folders: Iterable[Path], *, leave_out: Path | None = None
                  ) -> dict[str, Any]:
    """What the result file keeps of the comparison: each compared target, or why nothing was compared."""
    commits = history(result["meta"]["commit"])
    if commits is None:
        return {"compared": [], "reason": f"git knows no history before commit {result['meta']['commit']} here"}
    compared = compare(result, earlier_results(commits, folders, leave_out=leave_out))
    if not compared:
        return {"compared": [], "reason": "no earlier run of this branch measured these targets with the same sizes"}
    return {"compared": [item.as_dict() for item in compared], "reason": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a result file of python -m bench")
    parser.add_argument("--with", dest="earlier", type=Path, help="compare with this result file only")
    parser.add_argument("--results", type=Path, action="append",
                        help=f"folders of earlier results (default {RESULTS.relative_to(REPO)} and the result's own)")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text(encoding="utf-8"))
    if args.earlier is not None:
        compared = compare(result, [(args.earlier.name, json.loads(args.earlier.read_text(encoding="utf-8")))])
        since = {"compared": [item.as_dict() for item in compared],
                 "reason": None if compared else f"{args.earlier.name} measured none of these targets with the same "
                                                 "sizes"}
    else:
        since = since_earlier(result, args.results or [RESULTS, args.result.parent], leave_out=args.result)
    print("\n".join(since_lines(since)).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
