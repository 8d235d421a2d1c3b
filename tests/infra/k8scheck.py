"""tools/k8scheck: strict Kubernetes manifest checks (built once with Go, cached like the collector)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.infra.services import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "tools" / "k8scheck" / "build.sh"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = ("base", "overlays/podmonitor", "overlays/otel-operator")
"""Every kustomization under deploy/k8s that a user applies (the test checks none is forgotten)."""


@dataclass
class Result:
    returncode: int
    resources: list[str]
    """``Kind/name`` of each resource checked."""
    problems: list[str]
    output: str


def ensure_k8scheck() -> Path:
    """Build (or reuse) k8scheck; fail loudly when Go or the module proxy is missing."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=15 * 60, check=False,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{BUILD_SCRIPT} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return Path(lines[-1])


def run(*paths: Path) -> Result:
    """Check kustomization directories or manifest files, with the operator's Instrumentation CRD."""
    binary = ensure_k8scheck()
    crds = [f"-crd={crd}" for crd in sorted((binary.parent / "crds").glob("*.yaml"))]
    completed = subprocess.run(
        [str(binary), *crds, *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    lines = completed.stdout.splitlines()
    return Result(
        returncode=completed.returncode,
        resources=[line.split()[-1] for line in lines if line.startswith("resource ")],
        problems=[line.removeprefix("problem ") for line in lines if line.startswith("problem ")],
        output=completed.stdout + completed.stderr,
    )
