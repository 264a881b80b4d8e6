"""One of many processes writing into one registry at once.

Used by tests/test_concurrency.py and benchmarks/bench_concurrency.py; the registry comes
from the environment (LAMIN_INTEGRATIONS_DB / LAMIN_INTEGRATIONS_STORAGE).

    python concurrent_writer.py INDEX N_RUNS WORKDIR [READY_DIR GO_FILE]

Records N_RUNS runs of one transform that every writer shares. Each run saves three
files at once: one of its own, and two shared with run number i of every other writer (the
first to save one creates the artifact, the others recreate it): `shared/<i>.txt`, and a
file saved without a key, so identified by its content alone. Odd writers save the three in
reverse order, so that writers lock the same rows in opposite orders. Each run after the
first reads the previous run's own output. With READY_DIR and
GO_FILE, the writer announces itself once imported and waits for GO_FILE, so that all
writers start together. Prints one JSON line: index, runs, start and end (epoch seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import lamin_integrations as ln

SOURCE = "# the transform every concurrent writer records runs of\n"


def expected_counts(writers: int, runs: int) -> dict[str, int]:
    """What the registry must hold after `writers` processes each recorded `runs` runs."""
    return {
        "runs": writers * runs,
        "artifacts": writers * runs + 2 * runs,
        "recreated_links": 2 * (writers * runs - runs),
        "input_links": writers * (runs - 1),
    }


def main() -> None:
    index, n_runs, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    if len(sys.argv) > 5:
        ready, go = Path(sys.argv[4]), Path(sys.argv[5])
        (ready / str(os.getpid())).touch()
        while not go.exists():
            time.sleep(0.001)
    start = time.time()
    workdir.mkdir(parents=True, exist_ok=True)
    transform = ln.Transform(key="concurrent_writer.py", kind="script", source_code=SOURCE).save()
    previous = None
    for i in range(n_runs):
        run = ln.Run(transform, name=f"writer{index}-{i}", status="started").save()
        files = [(f"own_{i}.txt", f"w{index}/{i}.txt", f"writer {index} run {i}\n"),
                 (f"shared_{i}.txt", f"shared/{i}.txt", f"shared by every writer, run {i}\n"),
                 (f"keyless_{i}.txt", None, f"shared by every writer without a key, run {i}\n")]
        artifacts = []
        for name, key, text in files:
            path = workdir / name
            path.write_text(text)
            artifacts.append(ln.Artifact(path, key=key, run=run))
        ln.save(artifacts if index % 2 == 0 else artifacts[::-1])
        if previous is not None:
            run.input_artifacts.add(previous)
        run.status = "completed"
        run.save()
        previous = artifacts[0]
    print(json.dumps({"index": index, "runs": n_runs, "start": start, "end": time.time()}))


if __name__ == "__main__":
    main()
