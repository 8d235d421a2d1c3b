"""The environment-variable table of docs/configuration.md, generated from ``settings.VARS``.

    python -m otel_asgi_kit.env_table                          # print it
    python -m otel_asgi_kit.env_table docs/configuration.md    # rewrite the copy in place

``tests/test_readme.py`` fails when the copy drifts from this output.
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


def rewrite(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{env_table()}\n{END}{tail}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        rewrite(sys.argv[1])
    else:
        print(env_table())
