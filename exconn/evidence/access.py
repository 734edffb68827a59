"""Access logs of the MTA-STS policy host: who fetched `/.well-known/mta-sts.txt`, with what status.

Two layouts: IIS W3C (`#Fields:` names the space-separated columns and may change mid-file; user
agents have `+` for spaces) and nginx/Apache "combined" (optionally with a leading virtual host,
Apache's `vhost_combined`). A fetcher is attributed by its user agent where that names the
provider, else by the provider's published sending ranges, else it is "unknown".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

from exconn.evidence.accumulate import Accumulator

POLICY_PATH = "/.well-known/mta-sts.txt"

# User agents the providers' policy fetchers send (as seen in published access logs and bot lists).
USER_AGENTS = (("google-smtp-sts", "Google"),)

# Published sending ranges (the providers' own lists: Google's _netblocks SPF records, Microsoft's
# Exchange Online Protection ranges, Yahoo's published outbound ranges). A fetch from there, under
# any user agent, is attributed "by address".
RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Google",
        (
            "35.190.247.0/24",
            "64.233.160.0/19",
            "66.102.0.0/20",
            "66.249.80.0/20",
            "72.14.192.0/18",
            "74.125.0.0/16",
            "108.177.8.0/21",
            "173.194.0.0/16",
            "209.85.128.0/17",
            "216.58.192.0/19",
            "216.239.32.0/19",
            "2001:4860:4000::/36",
            "2404:6800:4000::/36",
            "2607:f8b0:4000::/36",
            "2800:3f0:4000::/36",
            "2a00:1450:4000::/36",
            "2c0f:fb50:4000::/36",
        ),
    ),
    (
        "Microsoft",
        (
            "40.92.0.0/15",
            "40.107.0.0/16",
            "52.100.0.0/14",
            "104.47.0.0/17",
            "2a01:111:f400::/48",
            "2a01:111:f403::/48",
        ),
    ),
    ("Yahoo", ("66.163.184.0/21", "67.195.0.0/16", "74.6.0.0/16", "98.136.0.0/14", "106.10.0.0/16")),
)


@lru_cache(maxsize=1)
def _networks() -> tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...]:
    return tuple((name, ipaddress.ip_network(n)) for name, nets in RANGES for n in nets)


@lru_cache(maxsize=65536)
def attribute(ip: str, agent: str) -> tuple[str, str]:
    """(fetcher, attributed_by): by user agent first, then by address, else ("unknown" name)."""
    low = agent.lower()
    for needle, name in USER_AGENTS:
        if needle in low:
            return name, "user-agent"
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        addr = None
    if addr is not None:
        for name, net in _networks():
            if addr.version == net.version and addr in net:
                return name, "address"
    label = agent.split("/")[0].strip() or "-"
    return label[:60], "unknown"


_COMBINED = re.compile(
    r'^(?:(?P<vhost>\S+) )?(?P<ip>\S+) \S+ \S+ \[(?P<when>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)[^"]*" '
    r'(?P<status>\d{3}) \S+(?: "(?:[^"\\]|\\.)*" "(?P<agent>(?:[^"\\]|\\.)*)")?'
)


def _combined_time(text: str) -> str:
    try:
        when = dt.datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        return ""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessLogReader:
    def __init__(self, acc: Accumulator, since: str | None) -> None:
        self.acc = acc
        self.since = since
        self.fields: dict[str, int] = {}
        self.bad = 0

    def lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if not line:
                continue
            if line[0] == "#":
                if line.startswith("#Fields:"):
                    self.fields = {n.lower(): i for i, n in enumerate(line[8:].split())}
                continue
            if POLICY_PATH not in line:
                continue
            if self.fields:
                self._w3c(line)
            else:
                self._combined(line)

    def _w3c(self, line: str) -> None:
        cols = line.split(" ")
        f = self.fields
        if len(cols) != len(f):
            self.bad += 1
            return
        try:
            path = cols[f["cs-uri-stem"]]
            status = cols[f["sc-status"]]
            ip = cols[f["c-ip"]]
        except KeyError:
            self.bad += 1
            return
        if path.lower() != POLICY_PATH:
            return
        when = ""
        if "date" in f and "time" in f:
            when = f"{cols[f['date']]}T{cols[f['time']]}Z"
        agent = cols[f["cs(user-agent)"]].replace("+", " ") if "cs(user-agent)" in f else ""
        host = "-"
        for name in ("cs-host", "s-sitename", "s-computername", "s-ip"):
            if name in f and cols[f[name]] != "-":
                host = cols[f[name]].lower()
                break
        self._add(host, ip, agent, status, when)

    def _combined(self, line: str) -> None:
        m = _COMBINED.match(line)
        if not m:
            self.bad += 1
            return
        if m.group("path").split("?")[0].lower() != POLICY_PATH:
            return
        host = (m.group("vhost") or "-").rsplit(":", 1)[0].lower()
        self._add(
            host, m.group("ip"), m.group("agent") or "", m.group("status"), _combined_time(m.group("when"))
        )

    def _add(self, host: str, ip: str, agent: str, status: str, when: str) -> None:
        if self.since and when[:10] < self.since:
            return
        fetcher, by = attribute(ip, agent.replace("\\", ""))
        self.acc.fetch(host, fetcher, by, status, when)

    def close(self) -> None:
        self.acc.bad_lines += self.bad


def read_access_log(acc: Accumulator, chunks: Iterable[list[str]], since: str | None) -> None:
    reader = AccessLogReader(acc, since)
    for lines in chunks:
        reader.lines(lines)
    reader.close()


_W3C_HEAD = re.compile(rb"^#(Software|Version|Date|Fields):", re.M)
_COMBINED_HEAD = re.compile(rb'^(?:\S+ )?\S+ \S+ \S+ \[\d\d/\w{3}/\d{4}:[\d:]+ [+-]\d{4}\] "')


def looks_like_access_log(head: bytes) -> bool:
    if head.startswith(b"#") and b"#Fields: " in head[:8192] and b"cs-uri-stem" in head[:8192]:
        return _W3C_HEAD.search(head) is not None
    return _COMBINED_HEAD.match(head) is not None
