"""One self-contained HTML page for a pipeline run: summary, steps, lineage graph, files, failures.

Everything is inline (CSS, a few lines of JavaScript for sorting, the graph as SVG laid out
by Graphviz), so the page opens without a network and can be mailed or attached to the run.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from pathlib import Path
from typing import Any

from .graph import LineageGraph, artifact_label, human_size, run_label

FAILED = ("errored", "aborted")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem; color: #212121; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.muted { color: #757575; } code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #eee; padding: .3rem .6rem; text-align: left; vertical-align: top; }
table.sortable th { cursor: pointer; user-select: none; background: #fafafa; }
table.sortable th.asc::after { content: " \\25B2"; } table.sortable th.desc::after { content: " \\25BC"; }
.status { font-weight: 600; padding: .05rem .4rem; border-radius: .3rem; color: white; }
.status-completed { background: #2e7d32; } .status-errored { background: #c62828; } .status-aborted { background: #ef6c00; }
.status-started, .status-restarted { background: #1565c0; } .status-scheduled { background: #757575; }
tr.failed td { background: #ffebee; } .failure { border-left: 4px solid #c62828; padding: .2rem 1rem; margin: 1rem 0; background: #fff5f5; }
.failure pre { white-space: pre-wrap; }
#graph svg { max-width: 100%; height: auto; } dl.summary { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.summary dt { font-weight: 600; } dl.summary dd { margin: 0; }
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort") || a.cells[col].textContent;
        var y = b.cells[col].getAttribute("data-sort") || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _ts(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def duration_s(run: Any) -> float | None:
    if run.started_at and run.finished_at:
        return (run.finished_at - run.started_at).total_seconds()
    return None


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def engine_facts(run: Any) -> dict[str, Any]:
    """Resources, attempt and cache flag, wherever the adapter keeps them in params / _aux."""
    params: dict[str, Any] = run.params if isinstance(run.params, dict) else {}
    aux: dict[str, Any] = run._aux if isinstance(run._aux, dict) else {}
    prefect: dict[str, Any] = params["prefect"] if isinstance(params.get("prefect"), dict) else {}
    resources: dict[str, Any] = {}
    if params.get("threads") is not None:
        resources["threads"] = params["threads"]
    if isinstance(params.get("resources"), dict):
        resources.update({k: v for k, v in params["resources"].items() if not str(k).startswith("_")})
    for key in ("cpus", "memory", "peak_rss", "peak_vmem", "realtime", "%cpu", "exit", "exit_code"):
        for source in (params, aux):
            if source.get(key) is not None:
                resources[key] = source[key]
    attempt = params.get("attempt", prefect.get("attempt", aux.get("attempt")))
    cached = params.get("cached", prefect.get("cached", aux.get("cached")))
    from ..core.summary import run_error

    return {"resources": resources, "attempt": attempt, "cached": cached, "error": run_error(run)}


def build_report(run: Any, graph: LineageGraph | None = None) -> str:
    """The HTML page for `run` (a pipeline run, or any run: its steps are the runs below it)."""
    from . import run_graph

    graph = graph or run_graph(run)
    data = graph.data
    run = data.runs.get(run.id, run)
    transform = data.transforms.get(run.transform_id) or run.transform
    children = sorted((r for r in data.runs.values() if r.id != run.id), key=lambda r: (r.started_at or dt.datetime.max.replace(tzinfo=dt.UTC), r.id))
    generated = {e.target[1] for e in data.edges if e.kind in ("generated", "recreated")}
    used = {e.source[1] for e in data.edges if e.kind == "used"}
    inputs = [a for i, a in sorted(data.artifacts.items()) if i in used and i not in generated]
    outputs = [a for i, a in sorted(data.artifacts.items()) if i in generated]
    user = run.created_by
    who = "unknown" if user is None else f"{user.name} ({user.handle})" if user.name and user.name != user.handle else user.handle
    params = run.params if isinstance(run.params, dict) else {}
    where = ", ".join(x for x in (run.host, f"pid {run.pid}" if run.pid else None, params.get("workdir")) if x) or "unknown"
    counts: dict[str, int] = {}
    for r in children:
        counts[r.status] = counts.get(r.status, 0) + 1
    title = f"{transform.key if transform else 'run'} · {run.uid}"

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>",
             f"<meta name=\"generator\" content=\"lamin-integrations\"><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1 id=\"title\">{_e(transform.key if transform else 'run')} "
                 f"<span class=\"status status-{_e(run.status)}\" id=\"run-status\">{_e(run.status)}</span></h1>")
    parts.append(f"<p class=\"muted\">run <code>{_e(run.uid)}</code>"
                 f"{' · ' + _e(run.name) if run.name else ''} · report generated {_e(_ts(dt.datetime.now(dt.UTC)))}</p>")
    summary = [
        ("transform", f"{_e(transform.key)} <span class=\"muted\">({_e(transform.kind)}, uid {_e(transform.uid)})</span>" if transform else ""),
        ("version", _e(transform.version if transform and transform.version else "")),
        ("status", _e(run.status)),
        ("started", _e(_ts(run.started_at))),
        ("finished", _e(_ts(run.finished_at))),
        ("duration", _e(_fmt_duration(duration_s(run)))),
        ("who", _e(who)),
        ("where", _e(where)),
        ("reference", _e(f"{run.reference} ({run.reference_type})" if run.reference else "")),
        ("command", f"<code>{_e(run.cli_args)}</code>" if run.cli_args else ""),
        ("steps", _e(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")),
    ]
    parts.append("<h2>Summary</h2><dl class=\"summary\" id=\"summary\">")
    parts += [f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in summary]
    parts.append("</dl>")
    if params:
        parts.append("<details open><summary>params</summary><pre id=\"params\">"
                     f"{_e(json.dumps(params, indent=2, default=str, sort_keys=True))}</pre></details>")
    error = engine_facts(run)["error"]
    failed = [r for r in ([run] if run.status in FAILED else []) + children if r.status in FAILED]

    parts.append(f"<h2>Steps ({len(children)})</h2>")
    if children:
        parts.append("<table class=\"sortable\" id=\"steps\"><thead><tr><th>step</th><th>transform</th><th>status</th>"
                     "<th>started</th><th>duration</th><th>resources</th><th>attempt</th><th>cached</th><th>uid</th></tr></thead><tbody>")
        for r in children:
            facts = engine_facts(r)
            t = data.transforms.get(r.transform_id)
            d = duration_s(r)
            resources = ", ".join(f"{k}={v}" for k, v in facts["resources"].items())
            cached = "" if facts["cached"] is None else ("yes" if facts["cached"] else "no")
            css = " class=\"failed\"" if r.status in FAILED else ""
            parts.append(
                f"<tr{css} data-uid=\"{_e(r.uid)}\"><td>{_e(r.name or (t.key if t else ''))}</td><td>{_e(t.key if t else '')}</td>"
                f"<td data-sort=\"{_e(r.status)}\"><span class=\"status status-{_e(r.status)}\">{_e(r.status)}</span></td>"
                f"<td>{_e(_ts(r.started_at))}</td><td data-sort=\"{'' if d is None else f'{d:.3f}'}\">{_e(_fmt_duration(d))}</td>"
                f"<td>{_e(resources)}</td><td>{_e(facts['attempt'] if facts['attempt'] is not None else '')}</td>"
                f"<td>{cached}</td><td><code>{_e(r.uid)}</code></td></tr>")
        parts.append("</tbody></table>")
    if failed:
        parts.append(f"<h2>Failures ({len(failed)})</h2><div id=\"failures\">")
        for r in failed:
            text = engine_facts(r)["error"] or ("(no error text recorded)" if r is not run or not error else error)
            t = data.transforms.get(r.transform_id)
            parts.append(f"<div class=\"failure\" data-uid=\"{_e(r.uid)}\"><p><strong>{_e(run_label(r, t))}</strong> "
                         f"<span class=\"status status-{_e(r.status)}\">{_e(r.status)}</span> <code>{_e(r.uid)}</code></p>"
                         f"<pre>{_e(text)}</pre></div>")
        parts.append("</div>")

    parts.append("<h2>Lineage</h2><div id=\"graph\">")
    try:
        svg = graph.to_svg()
        parts.append(svg[svg.index("<svg"):] if "<svg" in svg else svg)
    except Exception as e:  # no Graphviz: the page still has the tree
        parts.append(f"<p class=\"muted\">graph not drawn: {_e(e)}</p><pre>{_e(graph.to_text())}</pre>")
    parts.append("</div>")

    for name, artifacts in (("Inputs", inputs), ("Outputs", outputs)):
        parts.append(f"<h2>{name} ({len(artifacts)})</h2>")
        if not artifacts:
            parts.append("<p class=\"muted\">none recorded</p>")
            continue
        parts.append(f"<table class=\"sortable\" id=\"{name.lower()}\"><thead><tr><th>key</th><th>size</th><th>hash</th>"
                     "<th>made by</th><th>uid</th></tr></thead><tbody>")
        for a in artifacts:
            maker = data.runs.get(a.run_id) if a.run_id else None
            made_by = run_label(maker, data.transforms.get(maker.transform_id)) if maker is not None else ""
            parts.append(f"<tr data-uid=\"{_e(a.uid)}\"><td>{_e(artifact_label(a))}</td>"
                         f"<td data-sort=\"{a.size if a.size is not None else ''}\">{_e(human_size(a.size) if a.size is not None else '')}</td>"
                         f"<td><code>{_e(a.hash or '')}</code> <span class=\"muted\">{_e(a.hash_type or '')}</span></td>"
                         f"<td>{_e(made_by)}</td><td><code>{_e(a.uid)}</code></td></tr>")
        parts.append("</tbody></table>")
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def write_report(run: Any, path: str | os.PathLike) -> Path:
    """Write the HTML report of `run` to `path`; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(run), encoding="utf-8")
    return out


def attach_report(run: Any, path: str | os.PathLike | None = None) -> Any:
    """Save the report as an artifact of `run`: its `report` if it has none, else `_aux["html_report"]`.

    Scripts tracked with `ln.track()` keep their log streams as `report`; a pipeline run
    recorded by an adapter usually has none, and gets the page. Returns the artifact.
    """
    import tempfile

    from ..core.models import Artifact

    with tempfile.TemporaryDirectory() as tmp:
        page = write_report(run, Path(path) if path else Path(tmp) / f"report_{run.uid}.html")
        artifact = Artifact(page, description=f"HTML report of run {run.uid}", kind="__lamindb_run__")
        artifact.__dict__["_no_lineage"] = True  # a report is about the run, not an output of it
        artifact.save()
    if run.report_id is None:
        run.report = artifact
    else:
        run._aux = {**(run._aux or {}), "html_report": artifact.uid}
    run.save()
    return artifact
