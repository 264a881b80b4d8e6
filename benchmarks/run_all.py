"""`make bench`: run every benchmark script and print one table.

Each script prints its rows as JSON with --json; this collects them in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from report import Row, render

HERE = Path(__file__).parent


def main() -> int:
    rows: list[Row] = []
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        proc = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0:
            failed.append(f"{script.name}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}")
            continue
        for item in json.loads(proc.stdout.strip().splitlines()[-1]):
            item.pop("ratio", None)
            rows.append(Row(**item))
    print(render(rows))
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
