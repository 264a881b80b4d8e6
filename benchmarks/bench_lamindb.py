"""lamindb side by side: the same operations, same sizes, on lamindb and on this package in one run.

lamindb lives in its own virtual environment (env `LAMINDB_VENV`, default /tmp/lamindb-venv;
`--setup` creates it with `pip install lamindb`). Without it this prints one informational row
and exits 0; a lamindb failure is a row too, never a failed `make bench`.

The lamindb side is a throw-away local SQLite instance made with `lamin init --storage <tmp>`,
with `LAMIN_SETTINGS_DIR` and `LAMIN_CACHE_DIR` pointing into the same temporary folder, so
nothing outside it is touched. lamindb has no offline switch: an instance that is not on the
hub still asks the hub (`instance.is_on_hub`) when a file outside storage is registered, which
`ln.track()` does for its environment file; with no network that raises URLError. Every
lamindb script therefore sets `ln.setup.settings.instance._is_on_hub = False` after the import
(in the "without track" script as well), and makes no network call after that.

Both sides run the same script text, `import lamindb as ln` or `import lamin_integrations as ln`:
  (a) a script doing `ln.track(); ln.finish()`, wall time minus the same script without them;
  (b) `ln.Artifact.from_dir(<1,000 files of 2 KiB>, key="small").save()` inside a tracked run;
  (c) `ln.save(<10,000 runs with params and one of 100 parents>)`.
Ratio = ours / lamindb.

Run: .venv/bin/python benchmarks/bench_lamindb.py [--setup]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Row, emit

VENV = Path(os.environ.get("LAMINDB_VENV", "/tmp/lamindb-venv"))
LAMINDB_PY = VENV / "bin" / "python"
REPEAT = 5
N_SMALL, N_PARENTS, N_CHILDREN = 1000, 100, 10_000
GOAL = "< 1 (faster than lamindb)"
OFFLINE = "ln.setup.settings.instance._is_on_hub = False  # no hub here; see bench_lamindb.py\n"

WORKER = f"""\
import json, sys, time
from pathlib import Path

module, what, data = sys.argv[1], sys.argv[2], Path(sys.argv[3])
if module == "lamindb":
    import lamindb as ln
    {OFFLINE}else:
    import lamin_integrations as ln
    ln.connect(f"sqlite:///{{Path.cwd() / 'lineage.db'}}", str(Path.cwd() / "storage"))
out = {{}}
if what == "artifacts":
    ln.track()
    start = time.perf_counter()
    ln.Artifact.from_dir(data, key="small").save()
    out["seconds"] = time.perf_counter() - start
    ln.finish()
else:
    transform = ln.Transform(key="k", kind="pipeline").save()
    parents = [ln.Run(transform, name=f"p{{i}}") for i in range({N_PARENTS})]
    ln.save(parents)
    children = [ln.Run(transform, name=f"c{{i}}", params={{"idx": i, "lr": 0.01}}, initiated_by_run=parents[i % {N_PARENTS}],
                       status="started") for i in range({N_CHILDREN})]
    start = time.perf_counter()
    ln.save(children)
    out["seconds"] = time.perf_counter() - start
    out["count"] = ln.Run.filter(transform=transform).count()
print(json.dumps(out))
"""


class Failed(Exception):
    pass


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{Path(cmd[1] if len(cmd) > 1 else cmd[0]).name}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        raise Failed(lines[-1][:120] if lines else f"exit code {proc.returncode}")
    return proc.stdout


def wall(python: Path, script: Path, env: dict[str, str]) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        run([str(python), str(script)], env, script.parent)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def note(text: str) -> Row:
    return Row(f"lamindb side by side: {text}", math.nan, "", None, "", "informational")


def setup_venv() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(LAMINDB_PY), "-m", "pip", "install", "-q", "lamindb"], check=True)


def lamindb_version() -> str | None:
    if not LAMINDB_PY.exists():
        return None
    proc = subprocess.run([str(LAMINDB_PY), "-c", "from importlib.metadata import version; print(version('lamindb'))"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def environments(tmp: Path) -> tuple[dict[str, str], dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAMIN_", "LAMINDB_"))}
    theirs = base | {"LAMIN_SETTINGS_DIR": str(tmp / "lamindb" / "settings"), "LAMIN_CACHE_DIR": str(tmp / "lamindb" / "cache")}
    ours = base | {"LAMIN_INTEGRATIONS_HOME": str(tmp / "ours" / "home")}
    return theirs, ours


def measure(tmp: Path, label: str) -> list[Row]:
    theirs_env, ours_env = environments(tmp)
    sides = {"lamindb": (LAMINDB_PY, theirs_env, tmp / "lamindb"), "ours": (Path(sys.executable), ours_env, tmp / "ours")}
    for _, _, folder in sides.values():
        folder.mkdir()
    try:
        run([str(VENV / "bin" / "lamin"), "init", "--storage", str(tmp / "lamindb" / "storage")], theirs_env, tmp / "lamindb")
    except Failed as exc:
        return [note(f"lamin init failed: {exc}")]
    imports = {"lamindb": f"import lamindb as ln\n{OFFLINE}", "ours": "import lamin_integrations as ln\n"}
    small = tmp / "small"
    small.mkdir()
    for i in range(N_SMALL):
        (small / f"f{i:04d}.txt").write_bytes(os.urandom(2048))
    rows = []

    # (a) track overhead: tracked script minus the same script without track/finish; the first run is not timed.
    try:
        added, plain = {}, {}
        for side, (python, env, folder) in sides.items():
            tracked = folder / "tracked.py"
            tracked.write_text(imports[side] + "ln.track()\nln.finish()\n")
            bare = folder / "plain.py"
            bare.write_text(imports[side])
            run([str(python), str(tracked)], env, folder)
            with_track = wall(python, tracked, env)
            plain[side] = wall(python, bare, env)
            added[side] = with_track - plain[side]
        rows.append(Row("lamindb side by side: script with ln.track(); ln.finish(), added wall time", added["ours"] * 1000, "ms",
                        added["lamindb"] * 1000, label, GOAL, added["ours"] < added["lamindb"]))
        rows.append(Row("  same script without them (import; lamindb also connects)", plain["ours"] * 1000, "ms",
                        plain["lamindb"] * 1000, label, "informational"))
    except Failed as exc:
        rows.append(note(f"track overhead not measured: {exc}"))

    # (b) and (c): one worker script, run by each side.
    for what, figure, scale, unit in [
        ("artifacts", f"register {N_SMALL:,} small files (from_dir + save), per artifact", 1000 / N_SMALL, "ms"),
        ("runs", f"ln.save({N_CHILDREN:,} runs with parents)", 1000, "ms"),
    ]:
        try:
            seconds = {}
            for side, (python, env, folder) in sides.items():
                worker = folder / f"worker_{what}.py"
                worker.write_text(WORKER)
                out = json.loads(run([str(python), str(worker), side, what, str(small)], env, folder).strip().splitlines()[-1])
                if what == "runs" and out["count"] != N_PARENTS + N_CHILDREN:
                    raise Failed(f"{side} saved {out['count']} runs, expected {N_PARENTS + N_CHILDREN}")
                seconds[side] = out["seconds"]
            rows.append(Row(f"  {figure}", seconds["ours"] * scale, unit, seconds["lamindb"] * scale, label, GOAL,
                            seconds["ours"] < seconds["lamindb"]))
        except Failed as exc:
            rows.append(note(f"{figure} not measured: {exc}"))
    return rows


def main() -> None:
    setup_error = ""
    if "--setup" in sys.argv and lamindb_version() is None:
        try:
            setup_venv()
        except (OSError, subprocess.CalledProcessError) as exc:
            setup_error = f"; --setup failed: {exc}"[:120]
    version = lamindb_version()
    if version is None:
        rows = [note(f"skipped, no lamindb in {VENV} (LAMINDB_VENV; --setup installs it){setup_error}")]
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="lamindb-bench-") as tmp:
                rows = measure(Path(tmp), f"lamindb {version}")
        except Exception as exc:  # never fail `make bench` over lamindb
            rows = [note(f"failed: {type(exc).__name__}: {str(exc)[:120]}")]
    emit(rows)


if __name__ == "__main__":
    main()
