"""The SMTP listener options shared by ``twistd indimail`` and
``twistd indimail-smtpd``: endpoint strings, ``none`` switches one off."""

from __future__ import annotations

from indimail.config.home import Home

DEFAULT_SMTP = "tcp:2525:interface=127.0.0.1"
DEFAULT_SUBMISSION = "tcp:2587:interface=127.0.0.1"

HOME_PARAMETER = ["home", None, None,
                  "home directory (default $INDIMAIL_HOME, else ~/.indimail)"]
LISTENER_PARAMETERS = [
    ["smtp", None, DEFAULT_SMTP, "SMTP listener endpoint"],
    ["submission", None, DEFAULT_SUBMISSION, "submission listener endpoint"],
    ["smtps", None, None, "SMTPS (implicit TLS) listener endpoint "
                          "(default: port 2465 on loopback with certs/servercert.pem)"],
]
SYNOPSIS = "[--home DIR] [--smtp ENDPOINT] [--submission ENDPOINT] [--smtps ENDPOINT]"


def default_smtps(home: Home, port: int = 2465) -> str:
    """Implicit TLS on loopback (port 2465) with the home's certificate."""
    cert = str(home.certs / "servercert.pem").replace(":", r"\:")
    return f"ssl:{port}:interface=127.0.0.1:privateKey={cert}"


def listener(value: str | None) -> str | None:
    """``none`` (or empty) switches a listener off."""
    if value is None or value.strip().lower() in ("", "none", "off"):
        return None
    return value
