#!/usr/bin/env bash
# The CRDs have one source of truth: crds/ at the repo root. The chart renders them from verbatim
# copies in charts/conductor-worker-operator/files/crds/ (Helm reads only files inside the chart).
# Run this after editing crds/*.yaml; tests/unit/test_chart_files.py fails while the copies differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/charts/conductor-worker-operator/files/crds"
mkdir -p "$dest"
rm -f "$dest"/*.yaml
for f in "$root"/crds/*.yaml; do
  cp "$f" "$dest/"
  echo "synced crds/${f##*/} -> ${dest#"$root"/}/${f##*/}"
done
