"""Which AUTH mechanisms to offer, from IndiMail's variables and the checkers.

Variable names follow indimail-mta's qmail-smtpd: ``DISABLE_AUTH_LOGIN``,
``DISABLE_AUTH_PLAIN``, ``DISABLE_CRAM_MD5`` … ``DISABLE_CRAM_RIPEMD``,
``DISABLE_DIGEST_MD5``, ``DISABLE_SCRAM_SHA1``, ``DISABLE_SCRAM_SHA256``,
``DISABLE_SCRAM_SHA1_PLUS``, ``DISABLE_SCRAM_SHA256_PLUS``; the platform
document spells the CRAM switches ``DISABLE_AUTH_CRAM_MD5`` …, so both
spellings work. ``SECURE_AUTH`` withholds LOGIN and PLAIN until TLS is on.
A variable disables when it is set at all (qmail's convention).
"""

from __future__ import annotations

from indimail.auth.realm import CAP_CRAM, CAP_PLAIN, CAP_SCRAM_SHA1, CAP_SCRAM_SHA256

# (mechanism, capability needed, disabling variables, needs channel binding)
_TABLE = [
    ("LOGIN", CAP_PLAIN, ("DISABLE_AUTH_LOGIN",), False),
    ("PLAIN", CAP_PLAIN, ("DISABLE_AUTH_PLAIN",), False),
    *[(f"CRAM-{x}", CAP_CRAM, (f"DISABLE_CRAM_{x}", f"DISABLE_AUTH_CRAM_{x}"), False)
      for x in ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512", "RIPEMD")],
    ("DIGEST-MD5", CAP_CRAM, ("DISABLE_DIGEST_MD5",), False),
    ("SCRAM-SHA-1", CAP_SCRAM_SHA1, ("DISABLE_SCRAM_SHA1",), False),
    ("SCRAM-SHA-256", CAP_SCRAM_SHA256, ("DISABLE_SCRAM_SHA256",), False),
    ("SCRAM-SHA-1-PLUS", CAP_SCRAM_SHA1, ("DISABLE_SCRAM_SHA1_PLUS",), True),
    ("SCRAM-SHA-256-PLUS", CAP_SCRAM_SHA256, ("DISABLE_SCRAM_SHA256_PLUS",), True),
]


def advertised_mechanisms(env, capabilities: set[str], tls: bool = False,
                          channel_binding: bool | None = None) -> list[str]:
    """Mechanisms for the EHLO ``AUTH`` line, in qmail-smtpd's order.

    *env* is the session's :class:`~indimail.config.environment.Environment`
    (anything with ``flag(name)``); *capabilities* comes from
    :func:`indimail.auth.realm.capabilities`; -PLUS variants need TLS with
    channel-binding data (*channel_binding* defaults to *tls*).
    """
    if channel_binding is None:
        channel_binding = tls
    out = []
    for name, cap, switches, needs_cb in _TABLE:
        if cap not in capabilities or any(env.flag(v) for v in switches):
            continue
        if needs_cb and not channel_binding:
            continue
        if cap == CAP_PLAIN and env.flag("SECURE_AUTH") and not tls:
            continue
        out.append(name)
    return out
