"""Track overhead: wall time of a script doing `ln.track(); ln.finish()` vs the same script without.

Both scripts `import lamin_integrations`; the difference is what tracking adds (the registry
lookups and writes, environment capture from its cache, git, the report). The first run
creates the transform, fills the environment cache and writes the byte-code cache (an
installed package has its .pyc files; a run with PYTHONDONTWRITEBYTECODE would compile our
modules on every start); it is not timed. On the embedded registry `ln.track()` does not
import SQLAlchemy (core/fasttrack.py); the second row shows what that import would cost.

Run: .venv/bin/python benchmarks/bench_track.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Row, emit

REPEAT = 9
TRACKED = "import lamin_integrations as ln\nln.track()\nln.finish()\n"
PLAIN = "import lamin_integrations as ln\n"


def walls(scripts: list[Path], env: dict[str, str]) -> list[float]:
    """Median wall time of each script, run in alternation so drift hits them alike."""
    times: list[list[float]] = [[] for _ in scripts]
    for _ in range(REPEAT):
        for script, samples in zip(scripts, times, strict=True):
            start = time.perf_counter()
            subprocess.run([sys.executable, str(script)], check=True, env=env, cwd=script.parent, capture_output=True)
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "LAMIN_INTEGRATIONS_HOME": str(folder / "home"), "PYTHONPYCACHEPREFIX": str(folder / "pyc")}
        for name in ("PYTHONDONTWRITEBYTECODE", "LAMIN_INTEGRATIONS_DB", "LAMIN_INTEGRATIONS_STORAGE"):
            env.pop(name, None)
        (folder / "tracked.py").write_text(TRACKED)
        (folder / "plain.py").write_text(PLAIN)
        (folder / "sa.py").write_text("import lamin_integrations.core.models\n")
        repo = folder / "repo"  # a script in a git work tree: commit, remote and a dirty check
        repo.mkdir()
        (repo / "tracked.py").write_text(TRACKED)
        git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
        for args in (["init", "-q"], ["remote", "add", "origin", "https://example.org/lab/pipeline.git"],
                     ["add", "tracked.py"], ["commit", "-q", "-m", "bench"]):
            subprocess.run([*git, *args], check=True)
        for script in (folder / "tracked.py", repo / "tracked.py"):  # create the transforms, warm the caches
            subprocess.run([sys.executable, str(script)], check=True, env=env, cwd=script.parent)
        with_track, in_git, without, import_floor = walls(
            [folder / "tracked.py", repo / "tracked.py", folder / "plain.py", folder / "sa.py"], env)
    added, added_git = (with_track - without) * 1000, (in_git - without) * 1000
    emit([
        Row("script with ln.track(); ln.finish(), added wall time", added, "ms", without * 1000, "same script without them",
            "< 100 ms added", added < 100),
        Row("  the same script in a git work tree", added_git, "ms", without * 1000, "same script without them",
            "< 100 ms added", added_git < 100),
        Row("  importing SQLAlchemy + the registry modules (avoided)", (import_floor - without) * 1000, "ms", None, "",
            "informational"),
    ])


if __name__ == "__main__":
    main()
