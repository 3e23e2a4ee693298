"""The Kubernetes manifests: every overlay renders with ``kubectl kustomize``
(offline), every object validates against the Kubernetes schemas (or, for Hangar's
own kinds, its CRDs), and the pods keep to what a shared cluster asks: non-root,
read-only root, no privilege, seccomp, limits, probes, network policies."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hangar.spec.crds import crd_kinds
from hangar.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
FOREIGN = {"keda.sh/v1alpha1": {"ScaledObject"}}
"""Kinds of other projects' CRDs, whose schemas are not on this machine: checked by
the tests below for what Hangar relies on."""

_rendered: dict[str, list[dict[str, Any]]] = {}


def rendered(overlay: str) -> list[dict[str, Any]]:
    if overlay not in _rendered:
        out = subprocess.run(
            ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        _rendered[overlay] = [doc for doc in yaml.safe_load_all(out) if doc]
    return _rendered[overlay]


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def test_there_is_an_overlay_to_try_and_one_for_production() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    version = kubernetes_validate.latest_version()
    checked = 0
    for doc in rendered(overlay):
        if doc["kind"] in FOREIGN.get(doc["apiVersion"], ()):
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 15
    crds = {doc["spec"]["names"]["kind"] for doc in of_kind(overlay, "CustomResourceDefinition")}
    assert crds == set(crd_kinds())  # the overlay installs every CRD


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_with_limits(overlay: str) -> None:
    workloads = of_kind(overlay, "Deployment") + of_kind(overlay, "StatefulSet")
    assert workloads
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "hangar", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_is_probed_and_both_processes_share_one_store(overlay: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    gateway = deployments["hangar-gateway"]["spec"]["template"]["spec"]["containers"][0]
    worker = deployments["hangar-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["command"] == ["hangar", "gateway"] and worker["command"] == ["hangar", "worker"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def secret_env(container: dict[str, Any]) -> dict[str, str]:
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in container["env"]
            if "valueFrom" in e
        }

    shared = {"HANGAR_DATABASE_URL": "database-url", "HANGAR_SECRET_KEYS": "secret-keys"}
    assert shared.items() <= secret_env(gateway).items()
    assert shared.items() <= secret_env(worker).items()
    assert secret_env(gateway)["HANGAR_ADMIN_KEY"] == "admin-key"
    assert "HANGAR_ADMIN_KEY" not in secret_env(worker)  # workers serve no one
    images = {c["image"] for c in (gateway, worker)}
    assert len(images) == 1 and ":" in images.pop()  # one image, pinned by the overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_sandboxes_everything_and_hangar_private_ranges(
    overlay: str,
) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    deny = policies["hangar-sandbox-default-deny"]
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "sandbox"}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    egress = policies["hangar-egress"]
    public = [
        peer["ipBlock"]
        for rule in egress["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer and peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    ]
    assert public and {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"} <= set(public[0]["except"])
    # Every Hangar pod is selected by an ingress policy.
    for workload in of_kind(overlay, "Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(
            "Ingress" in spec["policyTypes"]
            and spec["podSelector"].get("matchLabels", {}).items() <= labels.items()
            and spec["podSelector"].get("matchLabels")
            for spec in policies.values()
        ), workload["metadata"]["name"]


def test_production_scales_workers_on_a_metric_hangar_exports() -> None:
    (scaled,) = of_kind("production", "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == "hangar-worker"
    assert scaled["metadata"]["namespace"] == "hangar"
    exported = {m.name for m in Metrics().registry.collect()}
    assert "hangar_queue_depth" in exported and "hangar_queue_depth" in trigger["metadata"]["query"]
    (hpa,) = of_kind("production", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hangar-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
