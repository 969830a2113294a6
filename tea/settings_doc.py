"""The docs' settings table, generated from the declarations in ``tea/settings.py``.

``tea config --markdown`` prints it; ``python -m tea.settings_doc docs/configuration.md`` rewrites the part
of that page between the markers (``--check``: exit 1 when it differs, as the test suite does).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from tea.settings import OTHER_ENV, SETTINGS
from tea.settings_schema import MiB, Setting

BEGIN = "<!-- settings-table:start -->"  # what lies between is generated: edit tea/settings.py instead
END = "<!-- settings-table:end -->"


def _default(setting: Setting) -> str:
    value: Any = setting.default
    if value is None or value in ({}, ()):
        return "—"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if setting.kind == "size" and value >= MiB and value % MiB == 0:
        return f"`{value // 1024 // MiB}GiB`" if value % (1024 * MiB) == 0 else f"`{value // MiB}MiB`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if setting.kind == "bounds":  # as the environment takes it
        value = ",".join(f"{b:g}" for b in value)
    if setting.kind == "words":
        value = ",".join(value)
    return f"`{value}`"


def _meaning(setting: Setting) -> str:
    notes = []
    if setting.flag:
        notes.append(f"Flag `{setting.flag_name}`.")
    if setting.aliases:
        notes.append("Also read from " + ", ".join(f"`{name}`" for name in setting.aliases) + ".")
    if setting.telemetron:
        section, key = setting.telemetron.split(".")
        notes.append(f"Telemetron's `[{section}] {key}` and `{setting.env_names[-1]}` work too.")
    if setting.secret:
        notes.append("Secret: masked in `tea config`.")
    return " ".join([setting.help + ("." if notes else ""), *notes])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The settings table and the other ``TEA_*`` variables, as Markdown."""
    lines = ["| setting (`tea.toml` key) | environment | default | accepts | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        lines.append(f"| `{s.key}` | `{s.env}` | {_default(s)} | {_cell(s.accepted())} | {_cell(_meaning(s))} |")
    lines += ["", "Other `TEA_*` variables (not settings of the server):", ""]
    lines += [f"- `{name}`: {text}" for name, text in OTHER_ENV.items()]
    return "\n".join(lines) + "\n"


def splice(page: str) -> str:
    """``page`` with the text between the markers replaced by the current table."""
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the page has no {BEGIN!r} ... {END!r} markers")
    return f"{head}{BEGIN}\n{markdown()}{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tea.settings_doc",
                                     description="rewrite the generated settings table of docs pages")
    parser.add_argument("pages", nargs="*", default=["docs/configuration.md"])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.pages:
        with open(path, encoding="utf-8") as fh:
            page = fh.read()
        fresh = splice(page)
        if fresh != page:
            stale.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(fresh)
    if args.check and stale:
        print(f"stale settings table in {', '.join(stale)}: run python -m tea.settings_doc", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
