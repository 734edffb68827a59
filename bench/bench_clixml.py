"""Time exconn's CLIXML reader against a bare lxml parse and psrpcore on one large export.

    python bench/bench_clixml.py [--connectors 2000] [--source fabrikam|real] [--skip-psrpcore]

`--source fabrikam` (the default) writes the export with the samples' builder
(`scripts/make_samples.py` `big_export`, on tests/clixml_build): per server the five receive
connectors Setup creates and one send connector, realistic SerializationData blobs, deterministic.
`--source real` copies the real Exchange 2019 exports in ../shared/fixtures/real instead (five
receive connectors and one send connector per copy), with RefIds and TN RefIds renumbered per copy
so cross-object Refs stay valid, and server names made unique. Each contender runs in its own child
process, so its peak RSS (which includes libxml2's memory, unlike tracemalloc) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared/fixtures/real"
UNIT = ("CSS-Exchange_GetReceiveConnector.xml", "CSS-Exchange_GetSendConnector.xml")
HEADER = '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
BLOB = re.compile(r'<BA N="SerializationData">[^<]*')
REF = re.compile(r'<(Obj|Ref|TN|TNRef)\b([^>]*?)RefId="(\d+)"')


def shift(body: str, obj_offset: int, tn_offset: int) -> str:
    """Renumber Obj/Ref RefIds and TN/TNRef RefIds (two separate number spaces)."""
    return REF.sub(
        lambda m: f'<{m[1]}{m[2]}RefId="{int(m[3]) + (tn_offset if m[1].startswith("TN") else obj_offset)}"',
        body,
    )


def next_ids(body: str) -> tuple[int, int]:
    """The first unused Obj RefId and TN RefId of a body."""
    found = [(m[1].startswith("TN"), int(m[3])) for m in REF.finditer(body)]
    return 1 + max(n for tn, n in found if not tn), 1 + max(n for tn, n in found if tn)


def generate_fabrikam(path: Path, connectors: int) -> int:
    """Write an export of about `connectors` connectors with the samples' builder."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_samples

    return make_samples.big_export(path, connectors)


def generate_real(path: Path, connectors: int) -> int:
    """Write an export of about `connectors` connectors from the real exports; returns the number written."""
    if not REAL.is_dir():
        sys.exit(f"--source real needs the real exports in {REAL}")
    bodies = []
    for name in UNIT:
        text = (REAL / name).read_text(encoding="utf-8-sig")
        bodies.append(text[text.index(">") + 1 : text.rindex("</Objs>")])
    unit = bodies[0] + shift(bodies[1], *next_ids(bodies[0]))
    obj_stride, tn_stride = next_ids(unit)
    per_unit = 6
    copies = max(1, connectors // per_unit)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for copy in range(copies):
            renumbered = shift(unit, copy * obj_stride, copy * tn_stride)
            out.write(renumbered.replace("WIN-CTD3L0RGEN4", f"SRV{copy:05d}"))
        out.write("</Objs>")
    return copies * per_unit


GENERATORS = {"fabrikam": generate_fabrikam, "real": generate_real}


def blob_share(path: Path) -> float:
    """The fraction of the file's characters inside SerializationData, read in chunks."""
    blob = total = 0
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            total += len(line)
            blob += sum(len(m) for m in BLOB.findall(line))
    return blob / total


def run_exconn(path: Path) -> int:
    from exconn.clixml.reader import iter_clixml
    from exconn.sources.convert import convert

    count = 0
    for index, value in enumerate(iter_clixml(path)):
        count += sum(1 for r in convert(value, path=str(path), index=index) if type(r).__name__ != "Skipped")
    return count


def run_lxml(path: Path) -> int:
    from lxml import etree

    return len(etree.parse(str(path)).getroot())


def run_psrpcore(path: Path) -> int:
    from psrpcore.types import deserialize_clixml

    # No SecureStrings in the export, so no session cipher is needed.
    return len(deserialize_clixml(path.read_text(encoding="utf-8"), None))


CONTENDERS = {
    "exconn (parse+convert)": run_exconn,
    "lxml.etree.parse (bare)": run_lxml,
    "psrpcore deserialize_clixml": run_psrpcore,
}


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux's ru_maxrss survives exec, so it would report the parent's
    peak when that is higher; VmHWM belongs to this process image alone."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, path: Path) -> None:
    started = time.perf_counter()
    count = CONTENDERS[name](path)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "objects": count, "peak_mib": peak_rss_mib()}))


def run_child(*args: str) -> str:
    """Run Python in a fresh process that imports exconn from this checkout, installed or not."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}
    )
    if done.returncode:
        sys.exit(f"bench child {args} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connectors", type=int, default=2000)
    parser.add_argument("--source", choices=sorted(GENERATORS), default="fabrikam")
    parser.add_argument("--skip-psrpcore", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big-export.xml"
        started = time.perf_counter()
        written = GENERATORS[args.source](path, args.connectors)
        size_mb = path.stat().st_size / 1e6
        share = 100 * blob_share(path)
        print(
            f"export ({args.source}): {written} connectors, {size_mb:.1f} MB"
            f" ({share:.0f}% SerializationData), generated in {time.perf_counter() - started:.1f} s;"
            f" Python {sys.version.split()[0]}"
        )
        idle = run_child(
            "-c",
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            "import lxml.etree, exconn.sources.convert, bench_clixml; print(bench_clixml.peak_rss_mib())",
        )
        print(f"idle interpreter with lxml and exconn imported: {float(idle):.0f} MiB peak RSS\n")

        rows = []
        for name in CONTENDERS:
            if args.skip_psrpcore and name.startswith("psrpcore"):
                continue
            rows.append((name, json.loads(run_child(__file__, "--child", name, str(path)))))

    ours = rows[0][1]
    columns = ("contender", "seconds", "MB/s", "objects/s", "peak RSS MiB", "time vs exconn", "RSS vs exconn")
    table = [
        (
            name,
            f"{r['seconds']:.2f}",
            f"{size_mb / r['seconds']:.1f}",
            f"{r['objects'] / r['seconds']:.0f}",
            f"{r['peak_mib']:.0f}",
            f"{r['seconds'] / ours['seconds']:.2f}x",
            f"{r['peak_mib'] / ours['peak_mib']:.2f}x",
        )
        for name, r in rows
    ]
    widths = [max(len(row[i]) for row in (columns, *table)) for i in range(len(columns))]
    for row in (columns, *table):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print("\nobjects: model objects for exconn, top-level elements for lxml, top-level values for psrpcore")


if __name__ == "__main__":
    main()
