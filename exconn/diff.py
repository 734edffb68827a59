"""`exconn diff OLD.json NEW.json`: what changed between two audits (two JSON reports).

A finding is the same in both when its rule, target (kind and identity, case-insensitive as
Exchange compares names) and property are; it has *changed* when its severity or observed value
differs. Only new findings decide the exit code: a quarterly audit with nothing new passes even
when old findings remain.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from exconn._version import __version__
from exconn.errors import InputError
from exconn.output import POSTURE_FILE_LIMIT, decode_text, emit, read_small_file
from exconn.render.cells import visible, wrap
from exconn.render.common import finding_key, write_json
from exconn.rules.base import Severity

Entry = dict[str, Any]
_FIELDS = ("rule", "target", "property", "observed", "severity")


@dataclass(frozen=True, slots=True)
class Diff:
    old: Mapping[str, Any]  # the old report's header (generated_at, sources)
    new_report: Mapping[str, Any]
    new: tuple[Entry, ...]
    resolved: tuple[Entry, ...]
    changed: tuple[tuple[Entry, Entry], ...]

    def worst_new(self) -> Severity | None:
        return max((Severity.parse(e["severity"]) for e in self.new), default=None)


def load_report(path: str) -> dict[str, Any]:
    """An exconn JSON report, checked enough that every finding has what the diff compares."""
    try:
        doc = json.loads(decode_text(read_small_file(path, POSTURE_FILE_LIMIT)))
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            path, f"is not JSON ({exc}); give two reports of `exconn audit --format json`"
        ) from None
    findings = doc.get("findings") if isinstance(doc, dict) else None
    if not isinstance(findings, list):
        raise InputError(path, "is not an exconn JSON report (no findings list)")
    for i, f in enumerate(findings):
        target = f.get("target") if isinstance(f, dict) else None
        if not (
            isinstance(target, dict)
            and isinstance(f.get("rule"), str)
            and isinstance(target.get("kind"), str)
            and isinstance(target.get("identity"), str)
        ):
            raise InputError(path, f"finding #{i} lacks rule or target kind/identity")
        try:
            Severity.parse(str(f.get("severity")))
        except ValueError as exc:
            raise InputError(path, f"finding #{i}: {exc}") from None
    return dict(doc)


def key_of(f: Entry) -> tuple[str, str, str, str]:
    """The key a finding's JSON entry is matched by across runs (render.common.finding_key)."""
    t = f["target"]
    return finding_key(f["rule"], t["kind"], t["identity"], f.get("property"))


def _entry(f: Entry) -> Entry:
    return {name: f.get(name) for name in _FIELDS} | {k: v for k, v in f.items() if k not in _FIELDS}


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Diff:
    before: dict[tuple[str, str, str, str], list[Entry]] = {}
    for f in old["findings"]:
        before.setdefault(key_of(f), []).append(f)
    added: list[Entry] = []
    changed: list[tuple[Entry, Entry]] = []
    for f in new["findings"]:
        matches = before.get(key_of(f))
        if not matches:
            added.append(_entry(f))
            continue
        was = matches.pop(0)
        if was.get("severity") != f.get("severity") or was.get("observed") != f.get("observed"):
            changed.append((_entry(was), _entry(f)))
    resolved = [_entry(f) for group in before.values() for f in group]
    return Diff(
        old={k: old.get(k) for k in ("generated_at", "sources")},
        new_report={k: new.get(k) for k in ("generated_at", "sources")},
        new=tuple(added),
        resolved=tuple(resolved),
        changed=tuple(changed),
    )


def write_json_diff(d: Diff, fail_on: Severity, out: TextIO) -> None:
    write_json(
        out,
        {
            "tool": {"name": "exconn", "version": __version__},
            "old_report": dict(d.old),
            "new_report": dict(d.new_report),
            "fail_on": fail_on.label,
            "summary": {"new": len(d.new), "resolved": len(d.resolved), "changed": len(d.changed)},
            "new": list(d.new),
            "resolved": list(d.resolved),
            "changed": [{"old": a, "new": b} for a, b in d.changed],
        },
    )
    out.write("\n")


def _line(f: Entry) -> str:
    t = f["target"]
    observed = f.get("observed")
    shown = observed if isinstance(observed, str) else json.dumps(observed, ensure_ascii=False)
    prop = f" {f['property']} = {shown}" if f.get("property") else ""
    return f"{str(f['severity']).upper()} {f['rule']} {t['kind']} {t['identity']}:{prop}"


def write_table(d: Diff, fail_on: Severity, out: TextIO, columns: int) -> None:
    lines: list[str] = []

    def section(title: str, mark: str, entries: Iterable[str]) -> None:
        items = list(entries)
        lines.append(f"{title} ({len(items)}):")
        for text in items:
            lines.extend(wrap(visible(f"  {mark} {text}"), columns, indent="      "))

    section("New", "+", (_line(f) for f in d.new))
    section("Resolved", "-", (_line(f) for f in d.resolved))
    section(
        "Changed",
        "~",
        (f"{_line(a)} -> {str(b['severity']).upper()} {b.get('observed')!s}" for a, b in d.changed),
    )
    lines.append(_verdict(d, fail_on))
    out.writelines(line + "\n" for line in lines)


def _verdict(d: Diff, fail_on: Severity) -> str:
    worst = d.worst_new()
    if worst is not None and worst >= fail_on:
        return f"FAIL: new findings at or above '{fail_on.label}'"
    return f"PASS: nothing new at or above '{fail_on.label}'"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def write_markdown(d: Diff, fail_on: Severity, out: TextIO) -> None:
    out.write(
        "# exconn: what changed\n\n"
        f"From the audit of {d.old.get('generated_at')} to the audit of {d.new_report.get('generated_at')}.\n"
    )
    for title, entries in (("New", d.new), ("Resolved", d.resolved)):
        out.write(f"\n## {title} ({len(entries)})\n\n")
        if entries:
            out.write("| Severity | Rule | Target | Property | Observed |\n|---|---|---|---|---|\n")
            for f in entries:
                t = f["target"]
                out.write(
                    f"| {f['severity']} | {f['rule']} | {_md(t['kind'])} `{_md(t['identity'])}` "
                    f"| {_md(str(f.get('property') or ''))} | {_md(_json(f.get('observed')))} |\n"
                )
    out.write(f"\n## Changed ({len(d.changed)})\n\n")
    if d.changed:
        out.write("| Rule | Target | Before | After |\n|---|---|---|---|\n")
        for a, b in d.changed:
            t = b["target"]
            out.write(
                f"| {b['rule']} | {_md(t['kind'])} `{_md(t['identity'])}` "
                f"| {a['severity']}: {_md(_json(a.get('observed')))} "
                f"| {b['severity']}: {_md(_json(b.get('observed')))} |\n"
            )
    out.write(f"\n{_verdict(d, fail_on)}\n")


def run(old_path: str, new_path: str, *, fmt: str, fail_on: Severity, output: str | None = None) -> int:
    """Compare, write in `fmt` (table, json, markdown) to stdout or `output`; 1 when a new finding
    reaches `fail_on`, else 0. Raises InputError for a file that is not an exconn JSON report."""
    import sys

    d = compare(load_report(old_path), load_report(new_path))
    emit(lambda out: write_diff(d, fmt, fail_on, out), output, sys.stdout)
    worst = d.worst_new()
    return 1 if worst is not None and worst >= fail_on else 0


def write_diff(d: Diff, fmt: str, fail_on: Severity, raw: TextIO) -> None:
    """`d` in `fmt` (table, json, markdown); `exconn diff` and `audit --baseline` write it alike."""
    from exconn.render import escaping
    from exconn.render.table import terminal_width

    out = escaping(raw)  # a lone surrogate read back from a report's \\udXXX escape
    if fmt == "json":
        write_json_diff(d, fail_on, out)
    elif fmt == "markdown":
        write_markdown(d, fail_on, out)
    else:
        write_table(d, fail_on, out, terminal_width())
