"""A small script pipeline: it tracks itself and launches two tracked child scripts.

Each child calls `ln.track()`; because the parent's run uid travels in the environment,
the children are recorded as runs initiated by this one.
"""

import subprocess
import sys
from pathlib import Path

import lamin_integrations as ln

here = Path(__file__).parent
run = ln.track(params={"n_samples": 100, "threshold": 0.5})
for step in ("prepare.py", "analyze.py"):
    subprocess.run([sys.executable, str(here / step)], check=True)
ln.finish()
print(f"pipeline run {run.uid} finished with {run.initiated_runs.count()} child runs")
