"""The Docker build context is small, holds what the Dockerfiles copy, and dependencies get a layer of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.infra import dockerfiles
from tests.infra.services import REPO_ROOT

DOCKERFILES = (REPO_ROOT / "Dockerfile", REPO_ROOT / "deploy" / "k8s" / "autoinstrumentation" / "Dockerfile")
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
REQUIREMENTS_SCRIPT = REPO_ROOT / "deploy" / "docker" / "pyproject_requirements.py"


def test_venv_git_and_caches_stay_out_of_the_context() -> None:
    """.venv, .git, tests and byte-code are not sent to the Docker daemon."""
    patterns = dockerfiles.ignore_patterns(DOCKERIGNORE)
    for path in (".venv/bin/python", ".venv", ".git/HEAD", "tests/conftest.py", "otel_asgi_kit/__pycache__/x.pyc"):
        assert dockerfiles.is_excluded(path, patterns), path
    sent = {p.relative_to(REPO_ROOT).as_posix() for p in dockerfiles.context_files(REPO_ROOT, DOCKERIGNORE)}
    assert not [p for p in sent if p.startswith((".venv/", ".git/", "tests/"))]
    # The whole context is the package, the examples and two small files.
    assert sum((REPO_ROOT / p).stat().st_size for p in sent) < 2_000_000


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_everything_a_dockerfile_copies_is_in_the_context(dockerfile: Path) -> None:
    """Each COPY source from the build context survives .dockerignore (a file, or a directory with files)."""
    sent = {p.relative_to(REPO_ROOT).as_posix() for p in dockerfiles.context_files(REPO_ROOT, DOCKERIGNORE)}
    sources = [
        s for i in dockerfiles.instructions(dockerfile) if i.keyword in {"COPY", "ADD"} for s in i.copy_sources()
    ]
    assert sources
    for source in sources:
        source = source.rstrip("/")
        assert source in sent or any(p.startswith(f"{source}/") for p in sent), f"{dockerfile.name}: {source}"


def test_dependency_layer_is_built_from_pyproject_alone() -> None:
    """Only pyproject.toml (and the script reading it) is copied before dependencies install, the code after."""
    steps = dockerfiles.instructions(REPO_ROOT / "Dockerfile")
    install = next(i for i, s in enumerate(steps) if s.keyword == "RUN" and "pip install -r" in s.args)
    before = [src for s in steps[:install] if s.keyword in {"COPY", "ADD"} for src in s.copy_sources()]
    assert sorted(before) == ["deploy/docker/pyproject_requirements.py", "pyproject.toml"]
    after = [src for s in steps[install:] if s.keyword in {"COPY", "ADD"} for src in s.copy_sources()]
    assert {"otel_asgi_kit", "examples"} <= {a.rstrip("/").removeprefix("./") for a in after}
    package_install = next(s for s in steps[install + 1 :] if s.keyword == "RUN" and "pip install" in s.args)
    assert "--no-deps" in package_install.args


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the script runs in the image's Python 3.13 (tomllib)")
def test_requirements_script_lists_what_pyproject_declares() -> None:
    """The dependency layer installs the package's dependencies, the extra's and the build backend, nothing else."""
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pyproject_path = str(REPO_ROOT / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "--extras", "examples", "--build", pyproject_path],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    lines = result.stdout.split()
    expected = pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["examples"]
    assert lines == expected + pyproject["build-system"]["requires"]
    assert all(Requirement(line) for line in lines)
    wrong = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "--extras", "exampels", str(REPO_ROOT / "pyproject.toml")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0 and "exampels" in wrong.stderr


def test_autoinstrumentation_image_follows_the_operator_layout() -> None:
    """The operator's init container finds the kit in /autoinstrumentation and /autoinstrumentation-musl, with cp."""
    steps = dockerfiles.instructions(DOCKERFILES[1])
    stages = [s.args for s in steps if s.keyword == "FROM"]
    assert stages[-1].startswith("busybox:"), "the final image needs `cp` and nothing else"
    final = steps[max(i for i, s in enumerate(steps) if s.keyword == "FROM") :]
    targets = {s.args.split()[-1] for s in final if s.keyword == "COPY" and s.args.startswith("--from=")}
    assert targets == {"/autoinstrumentation", "/autoinstrumentation-musl"}
    assert any(s.keyword == "RUN" and "pip install" in s.args and "--target" in s.args for s in steps)
    assert any("python:" in stage and "alpine" in stage for stage in stages), "a musl build for Alpine apps"
