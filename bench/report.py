"""Targets, and the result files: JSON, a Markdown table and PNG plots."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Figures = dict[str, dict[str, Any]]

P99_LIMIT_MS = 50.0
SCALING_RSS_LIMIT_MB = 150.0
# "Not growing with rows": peak RSS at the largest size at most this much above the smallest.
SCALING_RSS_GROWTH = 1.2


@dataclass(frozen=True)
class Target:
    key: str
    description: str
    value: float | None
    limit: float
    direction: str  # "<=" or ">="
    figures: tuple[str, ...]
    reason: str | None = None
    extra_ok: bool = True  # a second condition (e.g. "writes nothing")
    extra_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.value is None:
            met = None
        else:
            within = self.value <= self.limit if self.direction == "<=" else self.value >= self.limit
            met = within and self.extra_ok
        return {"key": self.key, "description": self.description, "met": met, "value": self.value,
                "limit": self.limit, "direction": self.direction, "figures": list(self.figures),
                "reason": self.reason if self.value is None else self.extra_note}


def measured_beside_each_run(floor_key: str) -> bool:
    """Whether a floor is measured beside each run of its figure (the runner measures one before each first sync
    and around each re-sync), so that run i of the figure and run i of the floor belong together. The other floors
    are measured once per part, their runs apart from the figure's."""
    return floor_key.startswith(("floor_first_sync_", "floor_parse_validate_hash_"))


def _median(figures: Figures, key: str) -> float | None:
    figure = figures.get(key)
    if not figure or not figure.get("available"):
        return None
    return figure["median"]


def _ratio(figures: Figures, numerator: str, denominators: list[str]) -> tuple[float | None, str | None]:
    top = _median(figures, numerator)
    bottoms = [_median(figures, key) for key in denominators]
    missing = [key for key, value in zip([numerator, *denominators], [top, *bottoms]) if value is None]
    if missing:
        return None, "not measured: " + ", ".join(missing)
    return top / sum(bottoms), None  # type: ignore[operator]


def _paired_ratio(figures: Figures, numerator: str, denominator: str) -> tuple[float | None, str | None]:
    """The median of run i's figure over run i's floor, measured side by side; else the ratio of the medians."""
    top, bottom = figures.get(numerator, {}), figures.get(denominator, {})
    if top.get("available") and bottom.get("available") and len(top["runs"]) == len(bottom["runs"]):
        return statistics.median(value / floor for value, floor in zip(top["runs"], bottom["runs"])), None
    return _ratio(figures, numerator, [denominator])


def cpu_bound(figures: Figures, key: str, floors: list[str], cores: int | None) -> str | None:
    """What the machine's CPU time says of a figure against its floors: how many cores it kept busy, and its
    ratio if that work had kept every core busy from start to end (no run can be shorter). None when the
    figure has no CPU time."""
    figure = figures.get(key, {})
    floor = sum(_median(figures, name) or 0.0 for name in floors)
    if not cores or not floor or not figure.get("available") or "machine_cpu_seconds" not in figure:
        return None
    cpu = figure["machine_cpu_seconds"]["median"]
    return (f"the machine was busy {cpu:.1f} core-seconds during it, {cpu / figure['median']:.2f} of {cores} cores "
            f"on average; even with that work spread over all {cores} cores from start to end, it would take "
            f"{cpu / cores / floor:.2f}x the floor")


def against_least_work(figures: Figures, kind: str) -> str | None:
    """A first sync against what it must do at least, one step after another: parse, map and validate every row
    with its content hash, load as many rows in bulk, encrypt one value a row. Its floor leaves out the mapping
    and validation, which on our bench machine take longer than that whole floor: this ratio says how much the
    sync adds to its own necessary work, the floor's how it stands to the plainest load. None when one is not
    measured."""
    first = _median(figures, f"sync_first_{kind}")
    # The parse + validate + hash floor measured around this database's re-syncs when there is one, else the
    # one measured at the part's start.
    validate = next((value for key in (f"floor_parse_validate_hash_{kind}", "floor_parse_validate_hash")
                     if (value := _median(figures, key)) is not None), None)
    load, encrypt = _median(figures, f"floor_bulk_load_{kind}"), _median(figures, "floor_encrypt")
    if first is None or validate is None or load is None or encrypt is None:
        return None
    least = validate + load + encrypt
    return (f"against what a first sync must do at least, one step after another (parse + validate + hash "
            f"{validate:.2f} s, bulk load {load:.2f} s, one encryption a row {encrypt:.2f} s: {least:.2f} s), it "
            f"takes {first / least:.2f}x")


def _joined(*notes: str | None) -> str | None:
    said = [note for note in notes if note]
    return "; ".join(said) if said else None


def targets(figures: Figures, *, databases: list[str], scaling: list[int], workers: list[int],
            cores: int | None = None) -> list[dict]:
    found: list[Target] = []
    for kind in databases:
        # The floor measured just before each first sync (runner) when there is one, run by run as for the
        # re-sync; else the floors measured once at the start of the part.
        if f"floor_first_sync_{kind}" in figures:
            floors = [f"floor_first_sync_{kind}"]
            value, reason = _paired_ratio(figures, f"sync_first_{kind}", floors[0])
        else:
            floors = ["floor_csv_parse", f"floor_bulk_load_{kind}", "floor_encrypt"]
            value, reason = _ratio(figures, f"sync_first_{kind}", floors)
        found.append(Target(f"first_sync_{kind}", f"first full sync on {kind} <= 4x (parse + bulk load + one "
                            "MultiFernet encryption per row)", value, 4.0, "<=", (f"sync_first_{kind}", *floors),
                            reason, extra_note=_joined(cpu_bound(figures, f"sync_first_{kind}", floors, cores),
                                                       against_least_work(figures, kind))))
        # The floor measured around each re-sync (runner) when there is one: the median of the runs' own ratios.
        if f"floor_parse_validate_hash_{kind}" in figures:
            resync_floor = f"floor_parse_validate_hash_{kind}"
            value, reason = _paired_ratio(figures, f"sync_resync_{kind}", resync_floor)
        else:
            resync_floor = "floor_parse_validate_hash"
            value, reason = _ratio(figures, f"sync_resync_{kind}", [resync_floor])
        writes = figures.get(f"sync_resync_{kind}", {}).get("rows_written", [])
        written = sum(sum(run.values()) for run in writes)
        found.append(Target(f"resync_{kind}", f"unchanged re-sync on {kind} <= 2x (parse + validate + hash) and "
                            "writes nothing", value, 2.0, "<=", (f"sync_resync_{kind}", resync_floor),
                            reason, extra_ok=written == 0,
                            extra_note=None if written == 0 else f"wrote {written} rows: {writes}"))
    sizes = sorted(scaling)
    if sizes:
        largest = sizes[-1]
        tenth = largest // 10
        if tenth in sizes:
            value, reason = _ratio(figures, f"sync_scaling_{largest}", [f"sync_scaling_{tenth}"])
        else:
            value, reason = None, f"the scaling sizes hold no {tenth} (a tenth of {largest})"
        found.append(Target("scaling_time", f"time({largest}) / time({tenth}) <= 11", value, 11.0, "<=",
                            (f"sync_scaling_{largest}", f"sync_scaling_{tenth}"), reason))
        rss = _rss(figures, f"sync_scaling_{largest}")
        found.append(Target("scaling_peak_rss", f"peak RSS at {largest} rows <= {SCALING_RSS_LIMIT_MB:.0f} MB", rss,
                            SCALING_RSS_LIMIT_MB, "<=", (f"sync_scaling_{largest}",),
                            None if rss is not None else f"sync_scaling_{largest} not measured"))
        smallest_rss = _rss(figures, f"sync_scaling_{sizes[0]}")
        growth = rss / smallest_rss if rss is not None and smallest_rss else None
        found.append(Target("scaling_rss_flat", f"peak RSS does not grow with rows: RSS({largest}) / "
                            f"RSS({sizes[0]}) <= {SCALING_RSS_GROWTH}", growth, SCALING_RSS_GROWTH, "<=",
                            (f"sync_scaling_{largest}", f"sync_scaling_{sizes[0]}"),
                            None if growth is not None else "scaling not measured"))
    value, reason = _ratio(figures, "sync_soap", ["floor_zeep_parse"])
    found.append(Target("soap_sync", "SOAP sync <= 1.5x zeep's own parse of the same pages", value, 1.5, "<=",
                        ("sync_soap", "floor_zeep_parse"), reason))
    for count in workers:
        value, reason = _ratio(figures, f"api_balance_checks_w{count}", [f"api_floor_select_w{count}"])
        found.append(Target(f"balance_checks_w{count}", f"balance checks/s >= 50% of the one-SELECT floor "
                            f"({count} workers)", value, 0.5, ">=",
                            (f"api_balance_checks_w{count}", f"api_floor_select_w{count}"), reason))
        value, reason = _ratio(figures, f"api_redemptions_w{count}", [f"api_floor_write_w{count}"])
        found.append(Target(f"redemptions_w{count}", f"redemptions/s >= 50% of the minimal-write floor "
                            f"({count} workers)", value, 0.5, ">=",
                            (f"api_redemptions_w{count}", f"api_floor_write_w{count}"), reason))
    if 2 in workers:
        for figure in ("balance_checks", "redemptions"):
            key = f"api_{figure}_w2"
            p99 = figures.get(key, {}).get("p99_ms", {}).get("median") if figures.get(key, {}).get("available") \
                else None
            found.append(Target(f"p99_{figure}_w2", f"p99 latency of {figure.replace('_', ' ')} <= 50 ms "
                                "(2 workers)", p99, P99_LIMIT_MS, "<=", (key,),
                                None if p99 is not None else f"{key} not measured"))
    return [target.as_dict() for target in found]


def _rss(figures: Figures, key: str) -> float | None:
    figure = figures.get(key)
    if not figure or not figure.get("available") or "peak_rss_mb" not in figure:
        return None
    return figure["peak_rss_mb"]["median"]


# -- files ---------------------------------------------------------------------------

def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [f"# Bench {meta['date']} ({meta['commit']})", "",
             f"`{meta['command']}` on {meta['cpu_count']} cores, Python {meta['python']}. "
             "Each figure: median of the runs, with min and max; peak RSS of the measured process.", "",
             "## Targets", "", "| target | value | limit | met |", "| --- | ---: | ---: | :---: |"]
    for target in result["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[target["met"]]
        note = f" ({target['reason']})" if target.get("reason") else ""
        lines.append(f"| {target['description']}{note} | {_number(target['value'])} | "
                     f"{target['direction']} {_number(target['limit'])} | {met} |")
    lines += ["", "## Figures", "", "Machine CPU: the core-seconds the whole machine was busy during the run "
              "(the task, its workers, the database server, and whatever else ran).", "",
              "| figure | median | min | max | unit | peak RSS MB | machine CPU core-s | p50 / p99 ms |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for figure in result["figures"].values():
        if not figure.get("available"):
            why = figure.get("error") or figure.get("reason")
            lines.append(f"| {figure['name']} | {'error' if figure.get('error') else 'not available'}: "
                         f"{str(why).splitlines()[-1][:160]} | | | {figure['unit']} | | | |")
            continue
        rss = _number(figure["peak_rss_mb"]["median"]) if "peak_rss_mb" in figure else ""
        cpu = _number(figure["machine_cpu_seconds"]["median"]) if "machine_cpu_seconds" in figure else ""
        latency = (f"{_number(figure['p50_ms']['median'])} / {_number(figure['p99_ms']['median'])}"
                   if "p50_ms" in figure else "")
        lines.append(f"| {figure['name']} | {_number(figure['median'])} | {_number(figure['min'])} | "
                     f"{_number(figure['max'])} | {figure['unit']} | {rss} | {cpu} | {latency} |")
    lines += _stage_table(result["figures"])
    if result.get("since") is not None:
        lines += since_lines(result["since"])
    if result.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(plot).stem}]({Path(plot).name})" for plot in result["plots"]]
    return "\n".join(lines) + "\n"


def since_lines(since: dict[str, Any]) -> list[str]:
    """The comparison with earlier runs (``bench.compare``) as a Markdown section."""
    lines = ["", "## Since earlier runs", "",
             "Each target beside the newest run of an earlier commit of this branch that measured it with the same "
             "sizes (`python -m bench.compare`). Worse or better only when the spreads of the two runs' values do not "
             "overlap and the value moved by 5% or more. The machine is shared: a move within the spreads may be the "
             "machine alone, and a worse is worth a second run before its cause is looked for.", ""]
    if not since["compared"]:
        return lines + [f"Nothing compared: {since['reason']}."]
    lines += ["| target | earlier run | then | now | change | verdict |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for item in since["compared"]:
        verdict_text = f"**{item['verdict']}**" if item["verdict"] == "worse" else item["verdict"]
        lines.append(f"| {item['description']} | {item['earlier']} | {item['then']:.3g} | {item['now']:.3g} | "
                     f"{item['change']:+.0%} | {verdict_text} |")
    return lines


def _stage_table(figures: Figures) -> list[str]:
    """Where each sync's time went, stage by stage, as the sync itself reports it (medians of the runs; a sync
    that writes ends with its commit): what changed when a figure moves."""
    staged = {figure["name"]: figure["stages"] for figure in figures.values() if figure.get("stages")}
    if not staged:
        return []
    names = list(dict.fromkeys(name for runs in staged.values() for stages in runs for name in stages))
    lines = ["", "## Stages of the syncs", "", "Seconds per stage as the sync reports them (medians of the "
             "runs), from the run's start to its commit's end; the process's own start and exit are outside them.", "",
             f"| figure | {' | '.join(names)} |", f"| --- |{' ---: |' * len(names)}"]
    for figure_name, runs in staged.items():
        medians = [statistics.median(values) if (values := [stages[name] for stages in runs if name in stages])
                   else None for name in names]
        lines.append(f"| {figure_name} | {' | '.join(_number(value) for value in medians)} |")
    return lines


def plots(result: dict[str, Any], stem: Path) -> list[str]:
    """sync time and peak RSS against rows; API throughput per endpoint beside its floor. [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figures = result["figures"]
    written: list[str] = []
    scaling = sorted((figure["rows"], figure) for key, figure in figures.items()
                     if key.startswith("sync_scaling_") and figure.get("available"))
    if scaling:
        fig, (time_axis, rss_axis) = plt.subplots(1, 2, figsize=(10, 4))
        rows = [row for row, _ in scaling]
        for axis, pick, label in ((time_axis, lambda f: (f["median"], f["min"], f["max"]), "sync time (s)"),
                                  (rss_axis, lambda f: (f["peak_rss_mb"]["median"], f["peak_rss_mb"]["min"],
                                                        f["peak_rss_mb"]["max"]), "peak RSS (MB)")):
            values = [pick(figure) for _, figure in scaling]
            medians = [value[0] for value in values]
            errors = [[value[0] - value[1] for value in values], [value[2] - value[0] for value in values]]
            axis.errorbar(rows, medians, yerr=errors, marker="o", capsize=3)
            axis.set_xscale("log")
            axis.set_xlabel("rows")
            axis.set_ylabel(label)
            axis.grid(True, alpha=0.3)
        time_axis.set_title("first sync, SQLite")
        rss_axis.set_title("peak RSS of the sync process")
        fig.tight_layout()
        path = Path(f"{stem}-sync.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    pairs = [("floor_hello", "hello floor"), ("floor_select", "SELECT floor"), ("balance_checks", "balance checks"),
             ("floor_write", "write floor"), ("redemptions", "redemptions"), ("redemptions_one_budget", "one budget")]
    worker_counts = sorted({int(key.rsplit("_w", 1)[1]) for key in figures if key.startswith("api_")
                            and figures[key].get("available")})
    if worker_counts:
        fig, axis = plt.subplots(figsize=(10, 4))
        width = 0.8 / len(worker_counts)
        for index, workers in enumerate(worker_counts):
            keys = [f"api_{name}_w{workers}" for name, _ in pairs]
            medians = [figures.get(key, {}).get("median") or 0 for key in keys]
            low = [m - (figures.get(key, {}).get("min") or m) for m, key in zip(medians, keys)]
            high = [(figures.get(key, {}).get("max") or m) - m for m, key in zip(medians, keys)]
            positions = [position + index * width for position in range(len(pairs))]
            axis.bar(positions, medians, width, yerr=[low, high], capsize=3, label=f"{workers} workers")
        axis.set_xticks([position + width * (len(worker_counts) - 1) / 2 for position in range(len(pairs))])
        axis.set_xticklabels([label for _, label in pairs])
        axis.set_ylabel("requests/s")
        axis.set_title("API throughput beside its floor (PostgreSQL, gunicorn)")
        axis.legend()
        axis.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        path = Path(f"{stem}-api.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written
