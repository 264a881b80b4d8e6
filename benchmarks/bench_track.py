"""Track overhead: wall time of a script doing `ln.track(); ln.finish()` vs the same script without.

Both scripts `import lamin_integrations`; the difference is what tracking adds (SQLAlchemy's
import, the registry writes, environment capture from its cache, the report). The first run
fills the environment cache and is not timed.

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


def wall(script: Path, env: dict[str, str]) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True, env=env, cwd=script.parent, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tracked = folder / "tracked.py"
        tracked.write_text("import lamin_integrations as ln\nln.track()\nln.finish()\n")
        plain = folder / "plain.py"
        plain.write_text("import lamin_integrations as ln\n")
        env = {**os.environ, "LAMIN_INTEGRATIONS_HOME": str(folder / "home")}
        env.pop("LAMIN_INTEGRATIONS_DB", None)
        env.pop("LAMIN_INTEGRATIONS_STORAGE", None)
        subprocess.run([sys.executable, str(tracked)], check=True, env=env, cwd=folder)  # warm the caches
        with_track = wall(tracked, env)
        without = wall(plain, env)
        sqlalchemy_only = folder / "sa.py"
        sqlalchemy_only.write_text("import lamin_integrations.core.models\n")
        import_floor = wall(sqlalchemy_only, env)
    added = (with_track - without) * 1000
    emit([
        Row("script with ln.track(); ln.finish(), added wall time", added, "ms", without * 1000, "same script without them",
            "< 100 ms added", added < 100),
        Row("  of which importing SQLAlchemy + the registry modules", (import_floor - without) * 1000, "ms", None, "", "informational"),
    ])


if __name__ == "__main__":
    main()
