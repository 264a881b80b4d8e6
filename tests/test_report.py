"""The HTML run report, on a real Snakemake run with a failing step, opened in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import lamin_integrations as ln
from tests.conftest import _connected, python_env

CLI = str(Path(sys.executable).with_name("lamin-integrations"))

SNAKEFILE = textwrap.dedent("""
    rule all:
        input: "out/ok.txt", "out/bad.txt"

    rule ok:
        input: "in/x.txt"
        output: "out/ok.txt"
        threads: 1
        resources: mem_mb=20
        shell: "tr a-z A-Z < {input} > {output}"

    rule bad:
        input: "out/ok.txt"
        output: "out/bad.txt"
        shell: "echo 'disk <quota> exceeded' >&2; exit 3"
""")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("report")
    wd = folder / "wf"
    (wd / "in").mkdir(parents=True)
    (wd / "in" / "x.txt").write_text("some input\n")
    (wd / "Snakefile").write_text(SNAKEFILE)
    url, storage = f"sqlite:///{folder / 'lineage.db'}", folder / "storage"
    env = python_env(LAMIN_INTEGRATIONS_DB=url, LAMIN_INTEGRATIONS_STORAGE=str(storage),
                     LAMIN_INTEGRATIONS_HOME=str(folder / "home"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going", "--logger", "lamin"],
                          cwd=wd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode != 0  # the bad rule fails; the workflow is recorded as errored
    return url, storage


@pytest.fixture
def wf(recorded: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[ln.Run]:
    for _ in _connected(*recorded, monkeypatch):
        yield ln.Run.get(reference_type="snakemake_id")


def test_report_page_has_summary_steps_graph_files_and_failures(wf, tmp_path):
    from lamin_integrations.lineage.report import build_report

    page = build_report(wf)
    assert wf.status == "errored" and '<span class="status status-errored" id="run-status">errored</span>' in page
    assert "<h2>Steps (2)</h2>" in page and 'id="steps"' in page
    bad = ln.Run.get(reference_type="snakemake_job", name="bad")
    ok = ln.Run.get(reference_type="snakemake_job", name="ok")
    assert f'<tr class="failed" data-uid="{bad.uid}">' in page and f'<tr data-uid="{ok.uid}">' in page
    ok_row = page.split(f'<tr data-uid="{ok.uid}">')[1].split("</tr>")[0]
    assert "threads=1" in ok_row and "mem_mb=20" in ok_row  # resources from the job's params
    failure = page.split(f'<div class="failure" data-uid="{bad.uid}">')[1].split("</div>")[0]
    assert "CalledProcessError" in failure and "&lt;quota&gt;" in failure  # the error text, escaped
    inputs_section = page.split('id="inputs"')[1].split("</table>")[0]
    x = ln.Artifact.get(key="in/x.txt")
    assert x.uid in inputs_section and x.hash in inputs_section
    outputs_section = page.split('id="outputs"')[1].split("</table>")[0]
    assert ln.Artifact.get(key="out/ok.txt").uid in outputs_section
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing to fetch
    if shutil.which("dot") or os.environ.get("CI"):
        assert '<div id="graph">\n<svg' in page and f'id="r{ok.id}"' in page


def test_report_command_writes_the_page_and_can_attach_it(wf, tmp_path):
    out = tmp_path / "report.html"
    proc = subprocess.run([CLI, "report", wf.uid, "-o", str(out), "--attach"], capture_output=True, text=True,
                          env=python_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = ln.Run.get(wf.uid)
    assert run.report is not None and run.report.path.read_text() == out.read_text()
    assert run.report not in ln.lineage.downstream(run)  # a report is about the run, not an output of it


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_opens_in_headless_chromium(wf, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (Debian package chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from lamin_integrations.lineage.report import write_report

    page = write_report(wf, tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600"]
    shot = tmp_path / "report.png"
    proc = subprocess.run([exe, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    proc = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0 and 'id="summary"' in dom, proc.stderr[-2000:]
    for element in ('id="steps"', 'class="failed"', 'id="failures"', 'id="inputs"', 'id="outputs"', 'id="graph"'):
        assert element in dom, element
    assert "<svg" in dom.split('id="graph"')[1]


def test_a_failed_scripts_error_is_shown_in_its_report_and_exports(registry, tmp_path):
    """A script's error is recorded as the reason its run ended (`_aux.end_reason`, as the
    engines' is `_aux.error`): every view of the run shows it."""
    import json

    from lamin_integrations.lineage.export import export_run
    from lamin_integrations.lineage.report import build_report

    script = tmp_path / "fails.py"
    script.write_text("import lamin_integrations as ln\nln.track()\nraise RuntimeError('reference genome not found: hg38.fa')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=python_env(), timeout=120)
    assert proc.returncode == 1
    run = ln.Run.get(transform__key="fails.py")
    assert run.status == "errored"
    assert "reference genome not found: hg38.fa" in build_report(run)
    assert "error: RuntimeError: reference genome not found: hg38.fa" in run.describe(return_str=True)  # `show`
    events = [json.loads(line) for line in export_run(run, "openlineage", tmp_path / "ol.jsonl").read_text().splitlines()]
    [fail] = [e for e in events if e["eventType"] == "FAIL"]
    assert "reference genome not found" in fail["run"]["facets"]["errorMessage"]["message"]
    crate = json.loads((export_run(run, "ro-crate", tmp_path / "crate") / "ro-crate-metadata.json").read_text())
    [action] = [e for e in crate["@graph"] if e.get("identifier") == run.uid]
    assert "reference genome not found" in action["error"]
