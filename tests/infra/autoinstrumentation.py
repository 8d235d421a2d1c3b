"""The OpenTelemetry Operator's Python injection, done by hand: what deploy/k8s/autoinstrumentation/Dockerfile builds.

The image's /autoinstrumentation is ``pip install --target`` of the kit; the
operator's init container copies it into the pod with ``cp -r`` and the app
container gets (operator v0.140.0, internal/instrumentation/python.go)

    PYTHONPATH=<mount>/opentelemetry/instrumentation/auto_instrumentation:<app's PYTHONPATH>:<mount>

plus OTEL_* variables from the Instrumentation resource. Both trees are
cached under the cache dir, keyed by what they are built from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.infra.services import REPO_ROOT, cache_dir

MOUNT_PATH_PREFIX = "opentelemetry/instrumentation/auto_instrumentation"
"""Where opentelemetry-instrumentation's sitecustomize.py lives inside the copied tree."""


def _pip_target(requirements: list[str], key: str) -> Path:
    """``pip install --target`` into a cached directory (renamed into place when complete)."""
    root = cache_dir() / "autoinstrumentation"
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-warn-script-location", "--target", str(work / "tree"), *requirements],
            cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if not final.is_dir():
            (work / "tree").rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Trees of older sources are never used again (~40 MB each).
    family = key.split("-", 1)[0]
    for old in root.glob(f"{family}-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def kit_tree() -> Path:
    """The image's /autoinstrumentation for the current sources (the Dockerfile's ``pip install --target``)."""
    digest = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for path in [REPO_ROOT / "pyproject.toml", *sorted((REPO_ROOT / "otel_asgi_kit").rglob("*"))]:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + path.read_bytes())
    return _pip_target([str(REPO_ROOT)], f"kit-{digest.hexdigest()[:16]}")


def app_tree() -> Path:
    """The app image's own packages: uvicorn and starlette at the test environment's versions, and no kit."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("uvicorn", "starlette")]
    key = hashlib.sha256(f"{sys.version_info[:2]} {pins}".encode()).hexdigest()[:16]
    return _pip_target(pins, f"app-{key}")
