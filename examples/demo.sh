#!/usr/bin/env bash
# Run every example pipeline against the throw-away registry named by the Makefile, then
# show what was recorded. Engine examples add themselves here as they land.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${DEMO_OUT:-$work}  # the report and export are kept there (make demo: .demo/)

echo "== plain Python: a tracked script launching two tracked child scripts"
(cd "$work" && python "$OLDPWD/python/pipeline.py")

echo
echo "== Snakemake: snakemake --logger lamin (3 samples; a script: rule calls ln.track())"
cp -r snakemake "$work/snakemake"
(cd "$work/snakemake" && snakemake --cores 2 --logger lamin --quiet)
echo "-- the same workflow after one input changed: only the affected jobs rerun"
echo ">liver_extra" >> "$work/snakemake/data/liver.fasta"
echo "GGGCCCGGGCCC" >> "$work/snakemake/data/liver.fasta"
(cd "$work/snakemake" && snakemake --cores 2 --logger lamin --quiet)
lamin-integrations runs --reference-type snakemake_job --limit 12

echo
echo "== Prefect: a flow (clean -> 3 mapped summaries -> cached report), recorded by the drop-in decorators"
mkdir -p "$work/prefect"
(cd "$work" && PREFECT_HOME="$work/prefect-home" python "$OLDPWD/prefect/flow.py" "$work/prefect")
lamin-integrations runs --reference-type prefect_task_run --limit 10

echo
echo "== Nextflow: ingest a launch's trace, with the report, log, history, work dir and results found next to it"
# The launch ran in /nf/launch on another machine; its log and work dirs still name that folder.
cp -r nextflow "$work/nextflow"
lamin-integrations nextflow ingest "$work/nextflow/results/pipeline_info/execution_trace_2024-03-04_21-05-58.txt" --timezone UTC
echo "-- the same trace again: nothing new"
lamin-integrations nextflow ingest "$work/nextflow/results/pipeline_info/execution_trace_2024-03-04_21-05-58.txt" --timezone UTC
lamin-integrations runs --reference-type nextflow_task

echo
echo "== recorded runs"
lamin-integrations runs
pipeline=$(lamin-integrations runs --transform examples/python/pipeline.py --limit 1 --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["uid"])')
echo
echo "== lamin-integrations show $pipeline"
lamin-integrations show "$pipeline"
analyze=$(lamin-integrations runs --transform examples/python/analyze.py --limit 1 --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["uid"])')
echo
echo "== lamin-integrations show $analyze  (input from prepare.py, output summary.csv)"
lamin-integrations show "$analyze"
echo
lamin-integrations info

echo
echo "== lineage: where the Snakemake summary came from (one recursive query), and an HTML report of the workflow run"
summary=$(python -c 'import lamin_integrations as ln; print(ln.Artifact.get(key="results/summary.tsv").uid)')
lamin-integrations lineage "$summary" --depth 4
workflow=$(lamin-integrations runs --reference-type snakemake_id --limit 1 --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["uid"])')
lamin-integrations report "$workflow" -o "$out/report.html"
lamin-integrations export "$workflow" --format prov-json -o "$out/provenance.json"
