"""python -m bench [--smoke] [--rows N] [--scaling 10000,100000,1000000] [...]

Writes bench/results/<date>-<commit>.json, .md and PNG plots (or into --out), each target beside the newest
run of an earlier commit that measured it (``bench.compare``).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

from bench import compare, report
from bench.databases import DEFAULT_POSTGRES_SERVER
from bench.runner import REPO, Bench, BenchConfig

SMOKE = BenchConfig(rows=10_000, scaling=(200, 2_000), soap_rows=1_000, runs=1, load_seconds=2.0,
                    workers=(2,), api_passes=500, smoke=True)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def parse_args(argv: list[str]) -> tuple[BenchConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI): 10k rows, 2 s of load")
    parser.add_argument("--rows", type=int, help="rows for the sync figures (default 200000)")
    parser.add_argument("--scaling", type=_sizes, help="row counts for the scaling curve, e.g. 10000,100000,1000000")
    parser.add_argument("--soap-rows", type=int, help="rows for the SOAP figures (default: --rows)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3)")
    parser.add_argument("--load-seconds", type=float, help="seconds of load per API figure run (default 10)")
    parser.add_argument("--workers", type=_sizes, help="gunicorn worker counts (default 2,4)")
    parser.add_argument("--databases", help="sqlite,postgres (default both)")
    parser.add_argument("--api-passes", type=int, help="passes (and budgets) the API load spreads over")
    parser.add_argument("--parts", help="sync,scaling,soap,api (default all)")
    parser.add_argument("--postgres-server", default=os.environ.get("BENCH_POSTGRES_SERVER", DEFAULT_POSTGRES_SERVER),
                        help="a PostgreSQL server URL; the bench creates and drops its own databases there")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the results")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    config = SMOKE if args.smoke else BenchConfig()
    overrides = {name: value for name, value in {
        "rows": args.rows, "scaling": args.scaling, "runs": args.runs, "load_seconds": args.load_seconds,
        "workers": args.workers, "api_passes": args.api_passes, "seed": args.seed,
        "databases": tuple(args.databases.split(",")) if args.databases else None,
        "parts": tuple(args.parts.split(",")) if args.parts else None,
    }.items() if value is not None}
    config = replace(config, **overrides, postgres_server=args.postgres_server)
    if args.soap_rows is not None or ("rows" in overrides and not args.smoke):
        config = replace(config, soap_rows=args.soap_rows or config.rows)
    return config, args.out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config, out = parse_args(argv)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bench = Bench(config, Path(tempfile.mkdtemp(prefix="stadspas-bench-")))
    try:
        bench.run()
    finally:
        bench.cleanup()
    figures = {key: figure.as_dict() for key, figure in bench.figures.items()}
    commit = _commit()
    stem = out / f"{date.today().isoformat()}-{commit}"
    result = {
        "meta": {"date": date.today().isoformat(), "commit": commit, "command": "python -m bench " + " ".join(argv),
                 "python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                 "seconds": round(time.monotonic() - started, 1),
                 "config": {key: value for key, value in asdict(config).items() if key != "postgres_server"}},
        "figures": figures,
        "targets": report.targets(figures, databases=list(config.databases), scaling=list(config.scaling),
                                  workers=list(config.workers), cores=os.cpu_count()),
    }
    # Each target beside the newest earlier commit's run that measured it: what got slower since.
    result["since"] = compare.since_earlier(result, [compare.RESULTS, out], leave_out=Path(f"{stem}.json"))
    result["plots"] = report.plots(result, stem)
    report.write_json(Path(f"{stem}.json"), result)
    Path(f"{stem}.md").write_text(report.markdown(result), encoding="utf-8")
    print(report.markdown(result))
    print(f"results: {stem}.json, {stem}.md", file=sys.stderr)
    errors = [key for key, figure in figures.items() if figure.get("error")]
    if errors:
        print(f"these figures failed: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
