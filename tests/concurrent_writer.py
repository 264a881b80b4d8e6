"""One of many processes writing into one registry at once.

Used by tests/test_concurrency.py and benchmarks/bench_concurrency.py; the registry comes
from the environment (LAMIN_INTEGRATIONS_DB / LAMIN_INTEGRATIONS_STORAGE).

    python concurrent_writer.py INDEX N_RUNS WORKDIR [READY_DIR GO_FILE]

Records N_RUNS runs of one transform that every writer shares. Each run writes three
files: two of its own, and `shared/<i>.txt`, whose key and content are the same for run
number i of every writer (the first to save it creates the artifact, the others recreate
it). Each run after the first reads the previous run's first output. With READY_DIR and
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
        "artifacts": writers * runs * 2 + runs,
        "recreated_links": writers * runs - runs,
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
        files = {f"w{index}/{i}.a.txt": f"writer {index} run {i} a\n",
                 f"w{index}/{i}.b.txt": f"writer {index} run {i} b\n",
                 f"shared/{i}.txt": f"shared by every writer, run {i}\n"}
        artifacts = []
        for key, text in files.items():
            path = workdir / key.replace("/", "_")
            path.write_text(text)
            artifacts.append(ln.Artifact(path, key=key, run=run))
        ln.save(artifacts)
        if previous is not None:
            run.input_artifacts.add(previous)
        run.status = "completed"
        run.save()
        previous = artifacts[0]
    print(json.dumps({"index": index, "runs": n_runs, "start": start, "end": time.time()}))


if __name__ == "__main__":
    main()
