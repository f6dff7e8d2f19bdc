"""The ``cugmail`` plugin: closed user group mailing (``CUGMAIL``).

With ``CUGMAIL`` set, qmail-smtpd takes mail only from local users: the
sender's domain must be in ``rcpthosts`` and the sender must be a user
who exists, is active and may use SMTP (no ``NO_SMTP`` flag)::

    553 SMTP Access denied (#5.7.1)

An unknown sender is answered after 5 seconds (upstream's ``sleep(5)``
against address harvesting; here a wait on the injected clock).  Users of
a virtual domain are looked up in the virtual-domain store
(:mod:`indimail.vdomain.store`); other local senders through the
``control/recipients`` extension when it exists (the CHECKRECIPIENT
sources), else in ``users/assign`` (``users/cdb``) and the system
password database, as qmail-lspawn would find them.  A store failure is ``451 Requested action aborted:
database error (#4.3.2)``.  Whether recipients may be remote stays with
the relay rules (the seed: unset ``CHECKRELAY`` as well).

:class:`LocalSenders` is shared with the ``antispoofing`` plugin
(``CHECKSENDER``).
"""

from __future__ import annotations

import enum
from pathlib import Path

from twisted.internet import defer, task, threads

from indimail.fastlog import Logger
from indimail.plugins.api import ORDER_SENDER, deny, denysoft
from indimail.policy.lists import plugin_reactor
from indimail.policy.rcpthosts import RelayPolicy
from indimail.vdomain.flags import NO_SMTP

from .accesslist import session_pid

log = Logger()

ACCESS_DENIED = "SMTP Access denied (#5.7.1)"
DATABASE_ERROR = "Requested action aborted: database error (#4.3.2)"
INVALID_USER_DELAY = 5.0


class Status(enum.Enum):
    OK = "ok"
    ABSENT = "absent"
    INACTIVE = "user inactive"
    NO_SMTP = "No SMTP Flag"


class StoreSource:
    """The virtual-domain store, opened once on first use.

    ``setup.options["store"]`` (a store, or a callable returning one or a
    Deferred of one) wins; otherwise the home's store is opened when it
    has one (``MYSQL_HOST``, ``control/host.mysql`` or
    ``domains/indimail.db``).  None: this installation has no virtual
    domains."""

    OPTION = "vdomain_store_source"

    def __init__(self, home=None, env=None, reactor=None, store=None):
        self.home = home
        self.env = dict(env or {})
        self.reactor = reactor
        self._given = store
        self._store = None
        self._lock = defer.DeferredLock()

    @classmethod
    def from_setup(cls, setup) -> "StoreSource":
        """One source per service, shared by the plugins that need the store."""
        source = setup.options.get(cls.OPTION)
        if source is None:
            source = setup.options[cls.OPTION] = cls(setup.home, setup.env, setup.reactor,
                                                     setup.options.get("store"))
        return source

    def configured(self) -> bool:
        if self._given is not None:
            return True
        if self.home is None:
            return False
        return bool(self.env.get("MYSQL_HOST")
                    or (Path(self.home.control) / "host.mysql").exists()
                    or (Path(self.home.domains) / "indimail.db").exists())

    async def get(self):
        """The store, or None when there is none."""
        if self._store is not None:
            return self._store
        if not self.configured():
            return None
        await self._lock.acquire()
        try:
            if self._store is None:
                if self._given is not None:
                    given = self._given() if callable(self._given) else self._given
                    self._store = await defer.maybeDeferred(lambda: given)
                else:   # the process's one store, shared with the AUTH checker
                    from indimail.vdomain.credchecker import shared_store
                    self._store = await shared_store(self.home, self.env, self.reactor)
        finally:
            self._lock.release()
        return self._store


class LocalSenders:
    """Whether a local sender address is a user allowed to send."""

    def __init__(self, stores: StoreSource, users_dir=None, reactor=None, passwd=True,
                 recipients=None):
        self.stores = stores
        self.users_dir = users_dir
        self.reactor = reactor
        self.passwd = passwd
        self.recipients = recipients

    @classmethod
    def from_setup(cls, setup) -> "LocalSenders":
        if setup.home is None:
            return cls(StoreSource.from_setup(setup), None, setup.reactor)
        from indimail.vdomain.recipients import RecipientRules
        reactor = plugin_reactor(setup)
        rules = RecipientRules(setup.control, Path(setup.home.path), reactor)
        return cls(StoreSource.from_setup(setup), setup.home.users, reactor, recipients=rules)

    async def status(self, address: str) -> Status:
        """The store for its virtual domains; else ``control/recipients``
        when it exists, else users/assign and the password database.  Store
        (and recipients program) failures propagate: the caller answers 451."""
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        store = await self.stores.get()
        if store is not None and domain and await store.real_domain(domain):
            user = await store.lookup(address)
            if user is None:
                return Status.ABSENT
            if user.inactive:
                return Status.INACTIVE
            if (user.pw_gid or 0) & NO_SMTP:
                return Status.NO_SMTP
            return Status.OK
        if not local:
            return Status.ABSENT
        if self.recipients is not None:
            from indimail.vdomain.recipients import R_NO_FILE, R_NOT_FOUND
            code = await self.recipients.lookup(address)
            if code != R_NO_FILE:
                return Status.ABSENT if code == R_NOT_FOUND else Status.OK
        found = await self._in_thread(self._system_user, local)
        return Status.OK if found else Status.ABSENT

    def _system_user(self, local: str) -> bool:
        from indimail.delivery.assign import Assign, lookup_passwd
        if self.users_dir is not None and Assign(self.users_dir).lookup(local) is not None:
            return True
        return self.passwd and lookup_passwd(local) is not None

    def _in_thread(self, f, *args):
        if self.reactor is None:
            return threads.deferToThread(f, *args)
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)


async def refuse_unless_user(ctx, senders: LocalSenders, sender: str):
    """upstream's checks of a local sender: None, or the refusal."""
    pid, ip = session_pid(ctx), ctx.remote_ip
    try:
        status = await senders.status(sender)
    except Exception:
        log.failure("qmail-smtpd: pid {pid} {ip} Database error", pid=pid, ip=ip)
        return denysoft(DATABASE_ERROR, 451)
    if status is Status.OK:
        return None
    if status is Status.ABSENT:
        log.info("qmail-smtpd: pid {pid} {ip} mail from invalid user <{sender}>",
                 pid=pid, ip=ip, sender=sender)
        await task.deferLater(ctx.clock, INVALID_USER_DELAY, lambda: None)   # prevent DOS
    else:
        log.info("qmail-smtpd: pid {pid} {ip} SMTP Access denied to <{sender}> {why}",
                 pid=pid, ip=ip, sender=sender, why=status.value)
    return deny(ACCESS_DENIED, 553)


class CugMail:
    """The mail hook of ``CUGMAIL``."""

    name = "cugmail"
    order = ORDER_SENDER + 60       # after relaymailfrom, as upstream

    def __init__(self, relay: RelayPolicy, senders: LocalSenders):
        self.relay = relay
        self.senders = senders

    @classmethod
    def from_setup(cls, setup) -> "CugMail":
        return cls(RelayPolicy(setup.control), LocalSenders.from_setup(setup))

    def hook_mail(self, ctx, sender: str):
        if not ctx.env.flag("CUGMAIL"):
            return None
        if not self.relay.in_rcpthosts(sender):
            log.info("qmail-smtpd: pid {pid} {ip} Invalid SENDER address: MAIL from <{sender}>",
                     pid=session_pid(ctx), ip=ctx.remote_ip, sender=sender)
            return deny(ACCESS_DENIED, 553)
        return defer.ensureDeferred(refuse_unless_user(ctx, self.senders, sender))


PLUGINS = {"cugmail": CugMail.from_setup}

__all__ = ["CugMail", "LocalSenders", "StoreSource", "Status"]
