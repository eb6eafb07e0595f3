"""The get-inventory worker of every SDK language, run and autoscaled by the operator on the real stack.

For each of examples/{python,go,java,javascript}: the image is built (host toolchain + Debian-made base,
or FROM the runtime image) and loaded into the node; the chart's operator (its image, in a pod) runs
the example's ConductorWorker; 100 workflows started with taskToDomain {"get-inventory": "john"}
scale the fleet up from zero, all complete with the product id echoed and an inventory 0..9, and the
fleet goes back to zero. Each SDK's pods run the Conductor sidecar (the default), whose /metrics gives
the busy slots of every SDK (Go's own exports none): MetricsAvailable is True for all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

from helpers import wait_for
from teststack import demo, images
from teststack.config import StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

WORKFLOWS = 100
# The fleets whose pods report busy slots: the runtime itself, the other SDKs through the sidecar.
METERED = {"python": True, "go": True, "java": True, "javascript": True}


@pytest.fixture(scope="module")
def operator_release(stack: StackConfig, node) -> Iterator[None]:
    demo.helm_install(stack)
    yield
    demo.run([str(stack.helm), "uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NS, "--wait"], stack)


@pytest.mark.parametrize("lang", sorted(images.EXAMPLES))
def test_example_worker_scales_from_zero_completes_100_workflows_and_back(
    lang: str, stack: StackConfig, k8s_api, kubectl, conductor_client, operator_release
) -> None:
    scenario = demo.language(lang)
    demo.load_example(stack, lang)
    ns = f"lang-{lang[:4]}-{uuid.uuid4().hex[:6]}"
    apps, custom = client.AppsV1Api(k8s_api), client.CustomObjectsApi(k8s_api)
    manifest = yaml.safe_load(scenario.manifest.read_text())
    manifest["spec"]["conductor"]["serverUrl"] = stack.pod_conductor_url
    name = manifest["metadata"]["name"]

    def replicas() -> int | None:
        try:
            return apps.read_namespaced_deployment(name, ns).spec.replicas
        except client.ApiException:
            return None

    def status() -> dict:
        return (
            custom.get_namespaced_custom_object("conductor.io", "v1alpha1", ns, "conductorworkers", name).get("status")
            or {}
        )

    kubectl("create", "namespace", ns)
    try:
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
        demo.register(conductor_client, scenario)
        wait_for(lambda: replicas() == 0 and status().get("totalQueueDepth") == 0, 60, f"{name} idle at zero")

        inputs = {}
        for i in range(WORKFLOWS):
            wf_input = scenario.inputs(i, None)
            wf_id = conductor_client.start_workflow(scenario.workflow, wf_input, task_to_domain=scenario.task_to_domain)
            inputs[wf_id] = wf_input
        wait_for(lambda: (replicas() or 0) > 0, 30, "scale-up from zero on the backlog")

        pending = set(inputs)

        def finished() -> bool:
            for wf_id in list(pending):
                wf = conductor_client.get_workflow(wf_id, include_tasks=False)
                if wf["status"] != "RUNNING":
                    assert wf["status"] == "COMPLETED", (lang, wf["status"], wf.get("reasonForIncompletion"))
                    assert demo.output_ok(scenario, inputs[wf_id], wf["output"]), (lang, inputs[wf_id], wf["output"])
                    pending.discard(wf_id)
            return not pending

        wait_for(finished, 300, f"{WORKFLOWS} {lang} workflows completed", interval=1)
        # The verdict of the running fleet (a pod still starting may not answer yet: the verdict follows).
        expected = "True" if METERED[lang] else "False"

        def metrics_verdict() -> dict | None:
            found = [c for c in status().get("conditions") or [] if c["type"] == "MetricsAvailable"]
            return found[0] if found and found[0]["status"] == expected else None

        metrics = wait_for(metrics_verdict, 20, f"MetricsAvailable {expected} for the {lang} fleet", interval=0.5)
        assert metrics["reason"] == ("BusySlotsRead" if METERED[lang] else "NoBusySlotMetrics"), metrics
        wait_for(lambda: replicas() == 0, 120, "the fleet back to zero", interval=1)
        events = json.loads(
            kubectl("get", "events", "-n", ns, "--field-selector", "reason=Scaled", "-o", "json").stdout
        )
        assert any("Scaled from 0 to" in e["message"] for e in events["items"]), events
    finally:
        kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)
