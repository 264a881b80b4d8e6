"""Snakemake overhead: wall time of a 500-job trivial workflow with `--logger lamin` vs without.

Each job writes one small file; every job is recorded (run, input links, output artifact
hashed and copied to storage). The logger's wall time includes waiting at exit for its
recorder to finish, so nothing is left out of the figure. Runs alternate to share the noise.
Two modes: `--quiet all` (Snakemake prints nothing and sends no job-finished events: the
jobs are closed at the end) and Snakemake's default output (every event, each job closed
as it finishes, which is also when the logger keeps temp() outputs).

Run: .venv/bin/python benchmarks/bench_snakemake.py [--jobs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Row, emit

SNAKEFILE = """
N = {jobs}
rule all:
    input: expand("out/{{i}}.txt", i=range(N))
rule make:
    input: "seed.txt"
    output: "out/{{i}}.txt"
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def run(folder: Path, logger: bool, env: dict[str, str], quiet: bool = True) -> float:
    shutil.rmtree(folder / "out", ignore_errors=True)
    shutil.rmtree(folder / ".snakemake", ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *(["--quiet", "all"] if quiet else [])]
    if logger:
        cmd += ["--logger", "lamin"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=folder, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "Snakefile").write_text(SNAKEFILE.format(jobs=args.jobs))
        (folder / "seed.txt").write_text("seed\n")
        env = {**os.environ, "LAMIN_INTEGRATIONS_HOME": str(folder / "home")}
        env.pop("LAMIN_INTEGRATIONS_DB", None)
        env.pop("LAMIN_INTEGRATIONS_STORAGE", None)
        run(folder, True, env)  # warm caches (registry created, imports compiled)
        rows = []
        for quiet in (True, False):
            with_logger, without = [], []
            for _ in range(args.repeat):
                without.append(run(folder, False, env, quiet))
                with_logger.append(run(folder, True, env, quiet))
            lamin, plain = statistics.median(with_logger), statistics.median(without)
            mode = "--quiet all" if quiet else "default output"
            rows.append(Row(f"snakemake {args.jobs} trivial jobs with --logger lamin ({mode})", lamin * 1000, "ms",
                            plain * 1000, "same workflow without the logger", "ratio <= 1.10", lamin / plain <= 1.10))
    emit(rows)


if __name__ == "__main__":
    main()
