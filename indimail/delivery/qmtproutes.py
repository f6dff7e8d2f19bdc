"""``control/qmtproutes`` (and the ``QMTPROUTE`` variable): like
``smtproutes``, but the relay speaks QMTP (default port 209).

qmail-remote looks both tables up together: for each key of the host
(``mail.example.com``, ``.example.com``, ``.com``, the empty key) the
qmtproutes entry is tried before the smtproutes one, so QMTP wins at the
same level while a more specific smtproutes line still beats a less
specific qmtproutes line.  With the null sender ``!@`` is looked up first,
in qmtproutes, else in smtproutes.
"""

from __future__ import annotations

from indimail.delivery.smtproutes import Route, SmtpRoutes, parse_relay, routes_for


class QmtpRoutes(SmtpRoutes):
    """A parsed qmtproutes table: its routes use QMTP."""

    protocol = "qmtp"


def qmtp_routes_for(env, control) -> QmtpRoutes:
    """``QMTPROUTE`` from *env* when set, else ``control/qmtproutes``
    (``QMTPROUTEFILE`` names another control file).  Reads files."""
    value = env.get("QMTPROUTE")
    if value is not None:
        return QmtpRoutes.from_variable(value)
    return QmtpRoutes.from_lines(control.lines(env.get("QMTPROUTEFILE") or "qmtproutes"))


def choose_route(smtp: SmtpRoutes, qmtp: QmtpRoutes, host: str,
                 sender: str | None = None) -> Route | None:
    """The route for *host*: None means deliver by MX over SMTP."""
    if sender == "":
        for table in (qmtp, smtp):
            if "!@" in table.table:
                route = parse_relay(table.table["!@"], table.protocol)
                if route is not None:
                    return route
                break   # an empty bounce route: look the host up as usual
    host = host.lower()
    for i in range(len(host) + 1):
        if i == 0 or i == len(host) or host[i] == ".":
            for table in (qmtp, smtp):
                value = table.table.get(host[i:])
                if value is not None:
                    return parse_relay(value, table.protocol)
    return None


def route_for(env, control, host: str, sender: str | None = None) -> Route | None:
    """Both tables read (files: call in a thread) and *host* looked up."""
    return choose_route(routes_for(env, control), qmtp_routes_for(env, control), host, sender)
