#!/usr/bin/env bash
# Run every example pipeline against the throw-away registry named by the Makefile, then
# show what was recorded. Engine examples add themselves here as they land.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== plain Python: a tracked script launching two tracked child scripts"
(cd "$work" && python "$OLDPWD/python/pipeline.py")

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
