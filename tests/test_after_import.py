"""``after_import``: hooks run after a module's first import, never import it, and never break it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from otel_asgi_kit.after_import import after_import


def test_hook_runs_after_the_first_import_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered before the import: not imported by registering, called once the module's code has run."""
    (tmp_path / "kit_late_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[int] = []
    after_import("kit_late_module", lambda: seen.append(sys.modules["kit_late_module"].VALUE))
    assert "kit_late_module" not in sys.modules and seen == []
    importlib.import_module("kit_late_module")
    assert seen == [42]
    importlib.reload(sys.modules["kit_late_module"])
    assert seen == [42]
    del sys.modules["kit_late_module"]


def test_already_imported_module_gets_its_hook_at_once() -> None:
    """A module the app imported before the kit: the hook runs immediately."""
    seen: list[str] = []
    after_import("json", lambda: seen.append("json"))
    assert seen == ["json"]


def test_failing_hook_never_breaks_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hook that raises is reported once on stderr; the module imports normally."""
    (tmp_path / "kit_broken_hook_module.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def explode() -> None:
        raise RuntimeError("hook exploded")

    after_import("kit_broken_hook_module", explode)
    assert importlib.import_module("kit_broken_hook_module").VALUE == 1
    assert (
        "hooking kit_broken_hook_module failed and was contained: RuntimeError: hook exploded"
        in capsys.readouterr().err
    )
    del sys.modules["kit_broken_hook_module"]
