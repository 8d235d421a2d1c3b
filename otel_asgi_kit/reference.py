"""The README's environment-variable table, generated from ``settings.VARS``.

    python -m otel_asgi_kit.reference > /tmp/table.md

``tests/test_readme.py`` fails when the README's copy drifts from this output.
"""

from __future__ import annotations

from otel_asgi_kit.settings import VARS

BEGIN = "<!-- env-table:begin -->"
END = "<!-- env-table:end -->"


def env_table() -> str:
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for var in VARS:
        default = _cell(f"`{var.default}`") if var.default else "—"
        if var.kit_default:
            default += " (kit)"
        rows.append(f"| `{var.name}` | {default} | {_cell(var.doc)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(env_table())
