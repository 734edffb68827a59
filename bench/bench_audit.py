"""A whole offline audit against a bare lxml parse of the same file, as a user runs both.

    python bench/bench_audit.py [--connectors 4000] [--blob-fraction 0.25] [--runs 3] [--file F]

Both are fresh processes, startup included, from compiled bytecode (the package is compiled
first, as pip does when it installs): the bare parse is `python -c 'lxml.etree.parse(f)'`, the
audit is the `exconn` console script (`python -m exconn` when there is none beside this Python)
running `audit --offline FILE --format json -o /dev/null`. The export comes from
bench_clixml.generate (real Exchange 2019 exports, SerializationData blobs included, shortened to
`--blob-fraction` of their length to put 4,000 connectors in 60-130 MB).

Each figure is the best of `--runs` runs, the two contenders interleaved so that load from other
work on the machine falls on both alike. Wall time is what the user waits; CPU time (user + sys of
the child) is less disturbed by a busy machine. Peak RSS is the child's own `ru_maxrss`.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clixml import ROOT, blob_share, generate  # noqa: E402

BARE = "import sys, lxml.etree; lxml.etree.parse(sys.argv[1])"


def audit_command() -> list[str]:
    script = Path(sys.executable).parent / "exconn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exconn"]


def environment() -> dict[str, str]:
    """This checkout's exconn first on the path, installed or not."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def measure(command: list[str], ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in ok:
        sys.exit(f"{command} exited {child.returncode}:\n{stderr.decode(errors='replace')}")
    if stderr.strip():
        sys.exit(f"{command} wrote to stderr:\n{stderr.decode(errors='replace')}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def check_report(command: list[str], export: Path, folder: Path) -> int:
    """Run the audit once writing a real report (also a warm-up); the connectors it judged."""
    out = folder / "report.json"
    subprocess.run(
        [*command, "audit", "--offline", str(export), "--format", "json", "-o", str(out)],
        env=environment(),
        check=False,
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    return sum(1 for item in doc["inventory"] if item["kind"] in ("SendConnector", "ReceiveConnector"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connectors", type=int, default=4000)
    parser.add_argument("--blob-fraction", type=float, default=0.25)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--file", type=Path, help="audit this export instead of generating one")
    args = parser.parse_args()

    compileall.compile_dir(ROOT / "exconn", quiet=1)
    command = audit_command()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        export = args.file or folder / "big-export.xml"
        if args.file is None:
            written = generate(export, args.connectors, args.blob_fraction)
            print(f"export: {written} connectors", end=", ")
        size_mb = export.stat().st_size / 1e6
        print(
            f"{size_mb:.1f} MB ({100 * blob_share(export):.0f}% SerializationData);"
            f" Python {sys.version.split()[0]}"
        )
        judged = check_report(command, export, folder)
        print(
            f"audit: {' '.join(Path(c).name for c in command)}"
            " audit --offline FILE --format json -o /dev/null"
        )
        print(f"       (a warm-up run wrote a report listing {judged} send and receive connectors)")

        bare_runs, audit_runs = [], []
        for _ in range(args.runs):
            bare_runs.append(measure([sys.executable, "-c", BARE, str(export)]))
            # Exit 1 is "findings at or above --fail-on", a normal outcome here.
            audit_command_line = [
                *command,
                "audit",
                "--offline",
                str(export),
                "--format",
                "json",
                "-o",
                os.devnull,
            ]
            audit_runs.append(measure(audit_command_line, ok=(0, 1)))

    best = {
        key: {k: min(r[k] for r in runs) for k in ("wall", "cpu", "rss")}
        for key, runs in (("bare", bare_runs), ("audit", audit_runs))
    }
    rows = [
        ("bare lxml.etree.parse", best["bare"]),
        ("exconn audit --offline", best["audit"]),
    ]
    print(f"\nbest of {args.runs}, interleaved:")
    print(f"{'process':<24}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for label, r in rows:
        print(f"{label:<24}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['rss']:>14.0f}")
    ratio = {k: best["audit"][k] / best["bare"][k] for k in ("wall", "cpu", "rss")}
    print(f"{'audit / bare':<24}{ratio['wall']:>8.2f}x{ratio['cpu']:>8.2f}x{ratio['rss']:>13.2f}x")
    print(
        f"\ngoal: wall <= 2.00x ({'met' if ratio['wall'] <= 2 else 'NOT met'}),"
        f" peak RSS < 1.00x ({'met' if ratio['rss'] < 1 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
