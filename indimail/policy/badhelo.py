"""The ``badhelo`` plugin: HELO/EHLO greetings refused (upstream ``dohelo()``).

``ENFORCE_FQDN_HELO``: a client that is not a relay client and greets with
a name without a dot gets ``451 unable to accept non-FQDN HELO (#4.3.0)``
and is disconnected.  ``BADHELOCHECK`` (control file ``badhelo``) or
``BADHELO`` (the file it names) turn on the list check: a greeting listed
in the text, cdb or sql form (regular expressions with QREGEX) gets
``553 sorry, your HELO/EHLO greeting is in my badhelo list (#5.7.1)``,
relay clients included; with the check on, a client that is not a relay
client may not greet with this server's own name or IP either.
"""

from __future__ import annotations

from indimail.plugins.api import ORDER_HELO, deny, disconnect
from indimail.policy.badlists import address_match, prefix
from indimail.policy.lists import AddressList

NON_FQDN = "unable to accept non-FQDN HELO (#4.3.0)"
BAD_HELO = "sorry, your HELO/EHLO greeting is in my badhelo list (#5.7.1)"


def own_names(ctx) -> set[str]:
    """The names a stranger must not greet us with: our IP (bare or as a
    literal), ``TCPLOCALHOST``, ``me``."""
    names = set()
    local_ip = getattr(ctx.session, "local_ip", None)
    if local_ip and local_ip != "unknown":
        names.update({local_ip, f"[{local_ip}]"})
    for value in (ctx.env.get("TCPLOCALHOST"), getattr(ctx.settings, "me", None),
                  getattr(ctx.settings, "local_host", None)):
        if value:
            names.add(value)
    return {n.lower() for n in names}


class BadHelo:
    name = "badhelo"
    order = ORDER_HELO

    def __init__(self, setup):
        self.family = AddressList(setup.control, "badhelo", "BADHELO", setup=setup)

    @classmethod
    def factory(cls, setup):
        return cls(setup)

    async def hook_helo(self, ctx, helo: str):
        env = ctx.env
        helo = helo or ctx.session.helo or "unknown"
        check = "BADHELOCHECK" in env or "BADHELO" in env
        remote_host = env.get("TCPREMOTEHOST") or "unknown"
        if not ctx.relayclient:
            if "ENFORCE_FQDN_HELO" in env and "." not in helo:
                ctx.log.info("qmail-smtpd: pid {pid} {ip} non-FQDN HELO: {helo}", helo=helo,
                             **prefix(ctx))
                return disconnect(NON_FQDN, 451)
            if check and helo.lower() in own_names(ctx):
                return self.refuse(ctx, helo, remote_host)
        if not check:
            return None
        found, failure = await address_match(ctx, self.family, helo)
        if failure:
            return failure
        if found:
            return self.refuse(ctx, helo, remote_host)
        return None

    def refuse(self, ctx, helo: str, remote_host: str):
        ctx.log.info("qmail-smtpd: pid {pid} {ip} Invalid HELO greeting: HELO <{helo}> "
                     "FQDN <{host}>", helo=helo, host=remote_host, **prefix(ctx))
        return deny(BAD_HELO, 553)


PLUGINS = {"badhelo": BadHelo.factory}
