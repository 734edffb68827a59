"""The mail flow drawn as inline SVG: receive connectors (by server), send connectors, and where
mail goes (the internet, partner domains, Exchange Online), each edge marked by what protects it.

Built as text with every label escaped (names come from an export: hostile text). No script: the
picture is static. An edge's protection is told by colour *and* by its dash pattern and its
tooltip, so the legend does not rely on colour alone.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from exconn.model import UNKNOWN, AuthMechanism, Organization, ReceiveConnector, SendConnector, TlsAuthLevel
from exconn.rules.base import Report


class Protection(enum.Enum):
    VALIDATED = "validated TLS"
    OPPORTUNISTIC = "opportunistic TLS"
    PLAINTEXT_POSSIBLE = "plaintext possible"
    PLAINTEXT_SEEN = "plaintext seen"


# Colour, dash pattern and a letter drawn on the edge: three cues, one of them text.
STYLE: dict[Protection, tuple[str, str, str]] = {
    Protection.VALIDATED: ("#1a7f37", "", "V"),
    Protection.OPPORTUNISTIC: ("#9a6700", "8 4", "O"),
    Protection.PLAINTEXT_POSSIBLE: ("#cf222e", "2 4", "P"),
    Protection.PLAINTEXT_SEEN: ("#8250df", "10 3 2 3", "S"),
}
MEANING = {
    Protection.VALIDATED: "TLS required and the certificate checked",
    Protection.OPPORTUNISTIC: "TLS when offered; any certificate; falls back to plaintext",
    Protection.PLAINTEXT_POSSIBLE: "STARTTLS ignored or not offered: mail may go in the clear",
    Protection.PLAINTEXT_SEEN: "plaintext observed in logs (needs log evidence)",
}

_EXO_SUFFIXES = (".onmicrosoft.com", ".outlook.com", ".protection.outlook.com")
ROW = 26
COL_W = 300
GAP = 130
LABEL_CHARS = 40


def send_protection(c: SendConnector) -> Protection:
    if c.ignore_starttls is True:
        return Protection.PLAINTEXT_POSSIBLE
    if c.require_tls is True and c.tls_auth_level in (
        TlsAuthLevel.CERTIFICATE_VALIDATION,
        TlsAuthLevel.DOMAIN_VALIDATION,
    ):
        return Protection.VALIDATED
    return Protection.OPPORTUNISTIC


def receive_protection(c: ReceiveConnector) -> Protection:
    auth = c.auth_mechanism
    if isinstance(auth, AuthMechanism) and not auth & AuthMechanism.TLS:
        return Protection.PLAINTEXT_POSSIBLE
    if c.require_tls is True and c.domain_secure_enabled is True:
        return Protection.VALIDATED
    return Protection.OPPORTUNISTIC


def _server(c: ReceiveConnector) -> str:
    if isinstance(c.server, str) and c.server:
        return c.server
    return c.identity.split("\\", 1)[0] if "\\" in c.identity else "(server unknown)"


def _destinations(c: SendConnector) -> list[str]:
    spaces = c.address_spaces if c.address_spaces is not UNKNOWN else ()
    out: list[str] = []
    for space in spaces or ():
        if space.is_internet:
            out.append("Internet")
        elif space.domain is not None:
            exo = space.domain.endswith(_EXO_SUFFIXES) or space.domain in {"onmicrosoft.com"}
            out.append("Exchange Online" if exo else space.domain)
        else:
            out.append(space.raw)
    return list(dict.fromkeys(out)) or ["(no address space)"]


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class _Node:
    key: str
    label: str
    y: int
    note: str = ""  # a second, smaller line
    header: bool = False
    disabled: bool = False


def _text(x: int, y: int, text: str, *, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}"{klass}>{escape(_label(text))}</text>'


def _box(x: int, node: _Node, findings: int) -> str:
    if node.header:
        return _text(x, node.y + 16, node.label, cls="fl-head")
    dash = ' stroke-dasharray="4 3"' if node.disabled else ""
    note = f" ({findings} finding{'s' if findings != 1 else ''})" if findings else ""
    title = escape(node.key + note + (" (disabled)" if node.disabled else ""))
    stroke = "#cf222e" if findings else "#57606a"
    return (
        f"<g><title>{title}</title>"
        f'<rect x="{x}" y="{node.y + 2}" width="{COL_W}" height="{ROW - 4}" rx="4" fill="#ffffff" '
        f'stroke="{stroke}" stroke-width="{2 if findings else 1}"{dash}/>'
        + _text(x + 8, node.y + 17, node.label + (" ⚠" + str(findings) if findings else ""))
        + "</g>"
    )


def _edge(x1: int, y1: int, x2: int, y2: int, protection: Protection, title: str) -> str:
    colour, dash, _ = STYLE[protection]
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    mid = (x1 + x2) // 2
    path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
    return (
        f'<g class="fl-edge" data-protection="{escape(protection.value)}"><title>{escape(title)}</title>'
        f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.5"{dash_attr}/></g>'
    )


def _badge(x: int, y: int, protection: Protection) -> str:
    """The protection's letter in a circle where its edges leave: one per connector, never on top
    of another connector's (edges may cross; their starts do not)."""
    colour, _, letter = STYLE[protection]
    return (
        f'<circle cx="{x}" cy="{y}" r="7" fill="#ffffff" stroke="{colour}" stroke-width="1.5"/>'
        f'<text x="{x}" y="{y + 3}" text-anchor="middle" class="fl-letter">{letter}</text>'
    )


def svg(org: Organization, report: Report, marks: Mapping[str, Sequence[str]]) -> Markup:
    """The mail flow of `org` as one <svg> element; `marks` names partner protections by domain."""
    per_target = Counter((f.target.kind, f.target.identity) for f in report.findings)
    left: list[_Node] = []
    y = 40
    by_server: dict[str, list[ReceiveConnector]] = {}
    for rc in org.receive_connectors:
        by_server.setdefault(_server(rc), []).append(rc)
    receive_y: dict[str, int] = {}
    for server, connectors in by_server.items():
        left.append(_Node(server, f"Server {server}", y, header=True))
        y += ROW
        for rc in connectors:
            left.append(_Node(rc.identity, rc.name or rc.identity, y, disabled=rc.enabled is False))
            receive_y[rc.identity] = y
            y += ROW
    middle: list[_Node] = []
    y = 40 + ROW
    for sc in org.send_connectors:
        middle.append(_Node(sc.identity, sc.name or sc.identity, y, disabled=sc.enabled is False))
        y += ROW
    destinations: list[str] = []
    for sc in org.send_connectors:
        destinations.extend(d for d in _destinations(sc) if d not in destinations)
    # The internet first, Exchange Online last, partners in the order their connectors come (fewest
    # crossings for the usual one-connector-per-partner layout).
    order = {"Internet": 0, "Exchange Online": 2}
    destinations.sort(key=lambda d: order.get(d, 1))
    right: list[_Node] = []
    y = 40 + ROW
    dest_y: dict[str, int] = {}
    for d in destinations:
        mark = ", ".join(marks.get(d.lower(), ()))
        right.append(_Node(d, d + (f" [{mark}]" if mark else ""), y))
        dest_y[d] = y
        y += ROW
    # Partners that ask for more than opportunistic TLS but have no connector of their own: mail
    # to them takes the internet route, which is what the findings on them are about.
    ours = {str(a.domain_name).lower() for a in org.accepted_domains}
    routed = {d.lower() for d in destinations}
    for domain, kinds in sorted(marks.items()):
        if domain not in ours and domain not in routed:
            right.append(_Node(domain, f"{domain} [{', '.join(kinds)}] via Internet", y))
            y += ROW
    rows_end = max([n.y for n in (*left, *middle, *right)], default=40) + ROW
    stub = 90
    x_left = stub
    x_mid = x_left + COL_W + GAP
    x_right = x_mid + COL_W + GAP
    width = x_right + COL_W + 10
    height = rows_end + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="flow-title" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="flow">',
        '<title id="flow-title">Mail flow: receive connectors by server, send connectors, destinations; '
        "each edge marked V (validated TLS), O (opportunistic), P (plaintext possible) or S (plaintext seen)"
        "</title>",
        _text(x_left, 22, "Receive connectors (by server)", cls="fl-col"),
        _text(x_mid, 22, "Send connectors", cls="fl-col"),
        _text(x_right, 22, "Internet · partners · Exchange Online", cls="fl-col"),
    ]
    # Inbound: who can reach each receive connector, and how that hop is protected.
    for rc in org.receive_connectors:
        ry = receive_y[rc.identity] + ROW // 2
        ranges = rc.remote_ip_ranges if rc.remote_ip_ranges is not UNKNOWN else ()
        public = any(r.is_everything for r in ranges or ())
        who = "anyone" if public else f"{len(ranges or ())} range(s)"
        parts.append(_text(2, ry - 6, who, cls="fl-small"))
        parts.append(
            _edge(
                2,
                ry,
                x_left,
                ry,
                receive_protection(rc),
                f"{who} -> {rc.identity}: {receive_protection(rc).value}",
            )
        )
    # Through the transport service: every receive connector can feed every send connector.
    bus_x = x_left + COL_W + GAP // 2
    if left and middle:
        top = min(receive_y.values(), default=40) + ROW // 2
        bottom = max(max(receive_y.values(), default=40), middle[-1].y) + ROW // 2
        parts.append(
            f'<line x1="{bus_x}" y1="{top}" x2="{bus_x}" y2="{bottom}" stroke="#8c959f" stroke-width="3"/>'
        )
        parts.append(_text(bus_x, top - 8, "transport", cls="fl-small", anchor="middle"))
        for node in left:
            if not node.header:
                ny = node.y + ROW // 2
                parts.append(
                    f'<line x1="{x_left + COL_W}" y1="{ny}" x2="{bus_x}" y2="{ny}" stroke="#8c959f"/>'
                )
        for node in middle:
            ny = node.y + ROW // 2
            parts.append(f'<line x1="{bus_x}" y1="{ny}" x2="{x_mid}" y2="{ny}" stroke="#8c959f"/>')
    badges: list[str] = []
    for sc, node in zip(org.send_connectors, middle, strict=True):
        protection = send_protection(sc)
        y1 = node.y + ROW // 2
        parts.extend(
            _edge(
                x_mid + COL_W,
                y1,
                x_right,
                dest_y[d] + ROW // 2,
                protection,
                f"{sc.identity} -> {d}: {protection.value}",
            )
            for d in _destinations(sc)
        )
        badges.append(_badge(x_mid + COL_W + 12, y1, protection))
    parts += badges
    parts += [_box(x_left, n, per_target[("ReceiveConnector", n.key)]) for n in left]
    parts += [_box(x_mid, n, per_target[("SendConnector", n.key)]) for n in middle]
    parts += [_box(x_right, n, per_target[("Domain", n.key)]) for n in right]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every piece of text above went through escape()
