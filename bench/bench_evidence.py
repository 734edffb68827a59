"""Benchmark: `exconn evidence` reading protocol logs vs a bare csv.reader pass, and TLS-RPT vs parsedmarc.

    python bench/bench_evidence.py [--gigabytes 1.0] [--files 16] [--reports 2000] [--keep]

1. Protocol logs: generates >= 1 GB of Exchange receive and send protocol logs in a temporary
   folder (sessions written by scripts/make_evidence_samples.py's writers from samples/fabrikam,
   copied with fresh session ids), then, in the same run and on the same files:
   - baseline: `for row in csv.reader(open(f, newline="")): pass` over every file, one process;
   - exconn: `reduce_paths(files, workers=1)`: recognition, bounded line splitting, CSV, the session
     state machine and the aggregates, one process (the fair comparison: the goal is within 2x);
   - exconn with one worker process per core (what `exconn evidence` does; informational on a
     shared machine).
   The folder is deleted afterwards unless --keep.
2. TLS-RPT: the same N report files (JSON, shaped like the real reports in
   ../shared/fixtures/real/evidence: Google, Microsoft with its tlsa JSON-string, Mail.ru) parsed
   by exconn (`reduce_paths(..., workers=1)`) and by parsedmarc (`parse_smtp_tls_report_json` on
   each file's bytes), one process each; then N report mails (.eml with a gzip attachment) by
   exconn and by parsedmarc's `parse_report_file(..., offline=True)`.
Results are printed side by side with ratios (exconn time / peer time: below 1 means exconn is faster).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_evidence_samples as samples  # noqa: E402

from exconn.evidence import reduce_paths  # noqa: E402

REAL = ROOT / ".." / "shared" / "fixtures" / "real" / "evidence"


def generate_logs(folder: Path, total: int, files: int) -> list[Path]:
    org = samples.read_org(ROOT / "samples" / "fabrikam")
    rng = samples.Rng(7)
    day = dt.date(2025, 5, 30)
    blocks = {}
    for server in ("EX01", "EX02"):
        recv, send, _ = samples.protocol_logs(org, rng, day, server)
        for kind, lines in (("RECV", recv), ("SEND", send)):
            head = "\r\n".join(ln for ln in lines if ln.startswith("#")) + "\r\n"
            body = "\r\n".join(ln for ln in lines if not ln.startswith("#")) + "\r\n"
            blocks[f"{server}-{kind}"] = (head, body)
    per_file = total // files
    out = []
    copy = 0
    names = sorted(blocks)
    for n in range(files):
        head, body = blocks[names[n % len(names)]]
        path = folder / f"{names[n % len(names)]}-{n:03d}.LOG"
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(head)
            written = 0
            while written < per_file:
                # Fresh session ids per copy: every copy is new sessions, not one endless session.
                chunk = body.replace("08DD", f"{copy & 0xFFFF:04X}")
                f.write(chunk)
                written += len(chunk)
                copy += 1
        out.append(path)
    return out


def bare_csv(files: list[Path]) -> int:
    rows = 0
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            for _row in csv.reader(f):
                rows += 1
    return rows


class Took(float):
    """Wall-clock seconds, carrying the process's CPU seconds too (steadier on a shared machine)."""

    cpu: float


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t, c = time.perf_counter(), time.process_time()
    result = fn(*args, **kw)
    took = Took(time.perf_counter() - t)
    took.cpu = time.process_time() - c
    return took, result


def report_docs(count: int) -> list[bytes]:
    shapes = [
        json.loads((REAL / name).read_text())
        for name in (
            "tlsrpt_google-format_validation-failure_2024.json",
            "tlsrpt_microsoft_sts_and_tlsa-json-string_2025.json",
            "tlsrpt_mailru_sts-policy-fetch-error_2024.json",
            "tlsrpt_microsoft_no-sending-mta-ip_2025.json",
        )
    ]
    docs = []
    for i in range(count):
        doc = json.loads(json.dumps(shapes[i % len(shapes)]))
        doc["report-id"] = f"{doc['report-id']}-{i}"
        docs.append(json.dumps(doc).encode())
    return docs


def write_mails(folder: Path, docs: list[bytes]) -> None:
    for i, data in enumerate(docs):
        doc = json.loads(data)
        domain = doc["policies"][0]["policy"]["policy-domain"]
        mail = samples.EmailMessage()
        mail["From"] = "noreply-smtp-tls-reporting@google.com"
        mail["To"] = "tlsrpt@fabrikam.com"
        mail["Subject"] = f"Report Domain: {domain} Submitter: google.com Report-ID: <{doc['report-id']}>"
        mail["Date"] = "Wed, 04 Sep 2024 03:53:20 -0700"
        mail["Message-ID"] = f"<{i}tls@google.com>"
        mail["TLS-Report-Domain"] = domain
        mail["TLS-Report-Submitter"] = "google.com"
        mail.set_content("This is an aggregate TLS report from google.com\n")
        attachment = gzip.compress(data, mtime=0)
        mail.add_attachment(
            attachment, maintype="application", subtype="tlsrpt+gzip", filename=f"r{i}.json.gz"
        )
        mail.set_param("report-type", "tlsrpt")
        mail.set_type("multipart/report")
        (folder / f"r{i:05d}.eml").write_bytes(mail.as_bytes())


def parsedmarc_json(files: list[Path]) -> tuple[int, int]:
    import parsedmarc

    ok = bad = 0
    for path in files:
        try:
            parsedmarc.parse_smtp_tls_report_json(path.read_bytes())
            ok += 1
        except Exception:
            bad += 1
    return ok, bad


def parsedmarc_mail(files: list[Path]) -> tuple[int, int]:
    import parsedmarc

    ok = bad = 0
    for path in files:
        try:
            parsedmarc.parse_report_file(str(path), offline=True)
            ok += 1
        except Exception:
            bad += 1
    return ok, bad


def row(label: str, ours: Took, peer: Took, peer_name: str, size: str, cpu: bool = True) -> str:
    text = (
        f"{label:<34} {size:>10}  exconn {ours:7.2f} s  {peer_name} {peer:7.2f} s  ratio {ours / peer:5.2f}"
    )
    if cpu:  # one process each: CPU time too, which other people's load disturbs less
        text += f"  (CPU {ours.cpu:.2f} s vs {peer.cpu:.2f} s: {ours.cpu / peer.cpu:.2f})"
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gigabytes", type=float, default=1.0)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="exconn-bench-evidence-"))
    lines = []
    try:
        logs = tmp / "logs"
        logs.mkdir()
        t_gen, files = timed(generate_logs, logs, int(args.gigabytes * 2**30), args.files)
        size = sum(f.stat().st_size for f in files)
        print(f"generated {size / 2**30:.2f} GiB in {len(files)} files in {t_gen:.0f} s ({logs})", flush=True)
        t_csv, rows = timed(bare_csv, files)
        print(f"csv.reader: {rows} rows in {t_csv:.1f} s", flush=True)
        t_one, ev = timed(reduce_paths, files, workers=1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        sessions = sum(t.sessions for t in ev.traffic)
        print(f"exconn, 1 process: {sessions} sessions, {len(ev.traffic)} peers in {t_one:.1f} s", flush=True)
        cores = os.cpu_count() or 1
        t_par, ev_par = timed(reduce_paths, files, workers=cores)
        assert ev_par == ev, "parallel and serial reductions differ"
        gb = f"{size / 2**30:.2f} GiB"
        lines.append(row("protocol logs, 1 process", t_one, t_csv, "csv.reader", gb))
        lines.append(row(f"protocol logs, {cores} processes", t_par, t_csv, "csv.reader", gb, cpu=False))
        lines.append(
            f"{'':<34} {'':>10}  throughput: exconn {size / 2**20 / t_one:.0f} MiB/s (1 process), "
            f"{size / 2**20 / t_par:.0f} MiB/s ({cores}); csv.reader {size / 2**20 / t_csv:.0f} MiB/s; "
            f"peak RSS {rss} MiB"
        )
        shutil.rmtree(logs)

        reports = tmp / "reports"
        reports.mkdir()
        docs = report_docs(args.reports)
        for i, data in enumerate(docs):
            (reports / f"r{i:05d}.json").write_bytes(data)
        rfiles = sorted(reports.iterdir())
        t_ours, ev_r = timed(reduce_paths, rfiles, workers=1)
        try:
            t_peer, (ok, bad) = timed(parsedmarc_json, rfiles)
        except ImportError:
            lines.append("TLS-RPT: parsedmarc is not installed (pip install 'exconn[bench]')")
        else:
            lines.append(row("TLS-RPT JSON, 1 process", t_ours, t_peer, "parsedmarc", f"{len(rfiles)} files"))
            lines.append(
                f"{'':<34} {'':>10}  read: exconn {len({r.report_id for r in ev_r.tls_reports})} reports, "
                f"parsedmarc {ok} (refused {bad})"
            )
        mails = tmp / "mails"
        mails.mkdir()
        write_mails(mails, docs[: max(1, args.reports // 4)])
        mfiles = sorted(mails.iterdir())
        t_ours, ev_m = timed(reduce_paths, mfiles, workers=1)
        try:
            t_peer, (ok, bad) = timed(parsedmarc_mail, mfiles)
        except ImportError:
            pass
        else:
            n_mails = f"{len(mfiles)} files"
            lines.append(row("TLS-RPT mails (.eml), 1 process", t_ours, t_peer, "parsedmarc", n_mails))
            lines.append(
                f"{'':<34} {'':>10}  read: exconn {len({r.report_id for r in ev_m.tls_reports})} reports, "
                f"parsedmarc {ok} (refused {bad})"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
