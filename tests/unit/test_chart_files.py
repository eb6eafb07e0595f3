"""The chart's CRD copies are the CRDs of crds/, byte for byte (one source of truth).

Helm reads only files inside the chart, so the chart renders the CRDs from copies in
charts/conductor-worker-operator/files/crds/. After editing crds/*.yaml run `bash charts/sync-crd.sh`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIES = ROOT / "charts" / "conductor-worker-operator" / "files" / "crds"
SYNC = "run `bash charts/sync-crd.sh` to copy crds/ into the chart"


@pytest.mark.parametrize("name", ["conductorworker.yaml", "conductorconnection.yaml", "kopf-peering.yaml"])
def test_chart_crd_copy_matches_the_source(name):
    source, copy = ROOT / "crds" / name, COPIES / name
    assert copy.is_file(), f"{copy.relative_to(ROOT)} missing: {SYNC}"
    assert copy.read_bytes() == source.read_bytes(), f"{copy.relative_to(ROOT)} differs from crds/{name}: {SYNC}"


def test_every_crd_is_in_the_chart():
    assert {p.name for p in (ROOT / "crds").glob("*.yaml")} == {p.name for p in COPIES.glob("*.yaml")}, SYNC
