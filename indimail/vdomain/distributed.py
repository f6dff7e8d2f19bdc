"""Users of one domain on several databases: routing by ``control/mcdinfo``.

IndiMail spreads a *distributed* domain over several mail stores, each with
its own user database, listed in ``mcdinfo`` (one record per domain and mail
store: ``server``, ``port``, ``database``, ... and ``mdahost``, the mail
store's address).  The central database (``host.mysql``) keeps ``hostcntrl``
(user -> host id) and ``host_table`` (host id -> address).  To find a user,
upstream ``findmdahost``/``vauthOpen_user`` go hostcntrl -> host_table ->
the mcdinfo record of the domain whose mdahost is that address, and run the
query on that record's database.  A domain whose record says it is not
distributed lives wholly on its record's database; a domain without records
stays on the central database.

:class:`RoutedStore` is a :class:`~indimail.vdomain.store.VStore` over the
central database that sends the user-table operations (indimail/indibak) to
the right database, each through its own ``adbapi`` pool, opened on first use
and keyed by server, port and database.  Everything else (domains, aliases,
limits, hostcntrl, lastauth, ...) stays on the central database.
"""

from __future__ import annotations

from typing import Mapping

from twisted.internet import defer, threads

from . import cluster
from .backend import McdEntry, database_key, load_mcdinfo, mcd_entries_for
from .records import VUser
from .store import StoreError, UserExists, VStore, _lower, deferred


class RoutedStore(VStore):
    """The central store, routing user rows of mcdinfo domains to their database.

    *entries* are the mcdinfo records; when None they are read from the home's
    mcdinfo (``MCDFILE``) at :meth:`open`, together with this node's host id
    (``HOSTID``, else ``control/hostid``), which places new users."""

    def __init__(self, backend, *, home=None, env: Mapping[str, str] | None = None,
                 entries: list[McdEntry] | None = None, hostid: str | None = None,
                 reactor=None, create_database: bool = False, pool_max: int | None = None,
                 reactor_reads: bool = False):
        super().__init__(backend, reactor=reactor, create_database=create_database,
                         pool_max=pool_max, reactor_reads=reactor_reads)
        self.home = home
        self.env = dict(env or {})
        self.entries: list[McdEntry] = list(entries or [])
        self._read_config = entries is None
        self.hostid = hostid
        self._stores: dict[tuple, VStore] = {}
        self._opening: dict[tuple, defer.DeferredLock] = {}

    # -- lifecycle -------------------------------------------------------

    async def _open(self) -> "RoutedStore":
        if self._read_config and self.home is not None:
            env = {**self.env, "CONTROLDIR": self.env.get("CONTROLDIR") or str(self.home.control)}
            self.entries, hostid = await threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(),
                lambda: (load_mcdinfo(self.home, self.env), cluster.local_hostid(env)))
            self.hostid = self.hostid or hostid
        await super()._open()
        return self

    def close(self) -> defer.Deferred:
        """Close every database's pool, then the central one."""
        stores, self._stores = list(self._stores.values()), {}
        closing = [store.close() for store in stores]
        closing.append(super().close())
        return defer.gatherResults(closing)

    # -- which database --------------------------------------------------

    def domain_entries(self, domain: str) -> list[McdEntry]:
        """The mcdinfo records of *domain* (empty: the domain is central)."""
        return mcd_entries_for(self.entries, _lower(domain))

    def is_distributed(self, domain: str) -> bool:
        """Upstream ``is_distributed_domain``: the flag of the domain's first record."""
        entries = self.domain_entries(domain)
        return bool(entries) and entries[0].distributed == 1

    async def store_for(self, entry: McdEntry) -> VStore:
        """The opened store of *entry*'s database (the central one when it is that)."""
        key = entry.key
        if key == database_key(self.backend):
            return self
        store = self._stores.get(key)
        if store is not None and store.pool is not None:
            return store
        async with self._opening.setdefault(key, defer.DeferredLock()):
            store = self._stores.get(key)
            if store is None or store.pool is None:
                store = VStore(entry.backend(), reactor=self.reactor,
                               create_database=self.create_database, pool_max=self.pool_max,
                               reactor_reads=self.reactor_reads)
                await store.open()
                self._stores[key] = store
        return store

    async def _host_entry(self, entries: list[McdEntry], host: str) -> McdEntry | None:
        """The record whose mdahost is *host*'s host_table address (or *host* itself)."""
        ip = await VStore.host_ip(self, host)
        for wanted in (ip, host):
            for entry in entries:
                if wanted and entry.mdahost == wanted:
                    return entry
        return None

    async def route(self, name: str, domain: str) -> VStore | None:
        """The store holding *name@domain*'s row; None when hostcntrl does not
        place the user on a database of the domain's mcdinfo records."""
        entries = self.domain_entries(domain)
        if not entries:
            return self
        if entries[0].distributed != 1:
            return await self.store_for(entries[0])
        host = await VStore.mailstore(self, name, domain)
        if host is None:
            return None
        entry = await self._host_entry(entries, host)
        return None if entry is None else await self.store_for(entry)

    async def placement(self, domain: str, mdahost: str | None = None) -> tuple[McdEntry, str]:
        """(record, host id) for a new user of distributed *domain*: the record
        of *mdahost* if given, else of this node (its host id's address),
        else the domain's first record; the host id is this node's, else the
        host_table host of the record's mdahost, else the mdahost itself."""
        entries = self.domain_entries(domain)
        if mdahost:
            entry = next((e for e in entries if e.mdahost == mdahost), None)
            if entry is None:
                raise StoreError(f"{domain}: no mcdinfo entry for mdahost {mdahost}")
        else:
            entry = (await self._host_entry(entries, self.hostid) if self.hostid else None) \
                or entries[0]
        if self.hostid and await self._host_entry([entry], self.hostid) is entry:
            return entry, self.hostid
        rows = await self._query("SELECT host FROM host_table WHERE ipaddr = %s", entry.mdahost)
        return entry, (rows[0][0] if rows else entry.mdahost)

    async def _routed_stores(self, domain: str) -> list[VStore]:
        """Each database of *domain* once."""
        entries = self.domain_entries(domain)
        if not entries:
            return [self]
        stores: list[VStore] = []
        for entry in entries:
            store = await self.store_for(entry)
            if store not in stores:
                stores.append(store)
        return stores

    # -- users -------------------------------------------------------------

    @deferred
    async def add_user(self, user: VUser, mdahost: str | None = None) -> None:
        """Insert *user* into its database; for a distributed domain also
        record its host in hostcntrl (upstream ``iadduser``/``addusercntrl``)."""
        domain = _lower(user.pw_domain)
        entries = self.domain_entries(domain)
        if not entries:
            return await VStore.add_user(self, user)
        if entries[0].distributed != 1:
            return await (await self.store_for(entries[0])).add_user(user)
        if await VStore.mailstore(self, user.pw_name, domain) is not None:
            raise UserExists(f"user {_lower(user.pw_name)}@{domain} exists")
        entry, host = await self.placement(domain, mdahost)
        store = await self.store_for(entry)
        await store.add_user(user)
        await VStore.set_mailstore(self, user.pw_name, domain, host, user.pw_passwd)

    def _read_user(self, name: str, domain: str):
        if not self.domain_entries(domain):   # a central domain: the coalesced read itself
            return VStore._read_user(self, name, domain)
        return self._routed_user(name, domain)

    async def _routed_user(self, name: str, domain: str) -> VUser | None:
        store = await self.route(name, domain)
        if store is None:
            return None
        if store is self:
            return await VStore._read_user(self, name, domain)
        return await store.get_user(name, domain)

    get_user = deferred(_routed_user)

    @deferred
    async def update_user(self, user: VUser) -> bool:
        store = await self.route(user.pw_name, user.pw_domain)
        if store is None:
            return False
        if store is self:
            return await VStore.update_user(self, user)
        return await store.update_user(user)

    @deferred
    async def delete_user(self, name: str, domain: str) -> bool:
        """Remove the user's row from its database, then its central rows
        (hostcntrl, lastauth, userquota, vfilter)."""
        store = await self.route(name, domain)
        found = False
        if store is not None and store is not self:
            found = await store.delete_user(name, domain)
        return bool(await VStore.delete_user(self, name, domain)) or found

    @deferred
    async def set_inactive(self, name: str, domain: str, inactive: bool) -> bool:
        store = await self.route(name, domain)
        if store is None:
            return False
        if store is self:
            return await VStore.set_inactive(self, name, domain, inactive)
        return await store.set_inactive(name, domain, inactive)

    @deferred
    async def rename_user(self, old: VUser, new: VUser) -> None:
        """Rename within the user's database, then the central per-user rows."""
        store = await self.route(old.pw_name, old.pw_domain)
        if store is not None and store is not self:
            if _lower(old.pw_domain) != _lower(new.pw_domain) and \
                    self.domain_entries(new.pw_domain) != self.domain_entries(old.pw_domain):
                raise StoreError("cannot rename a user across databases")
            await store.rename_user(old, new)
        await VStore.rename_user(self, old, new)

    @deferred
    async def list_users(self, domain: str) -> list[VUser]:
        """The users of *domain* from all its databases, active then inactive,
        each sorted by name."""
        users: dict[tuple, VUser] = {}
        for store in await self._routed_stores(domain):
            listed = (await VStore.list_users(self, domain) if store is self
                      else await store.list_users(domain))
            for u in listed:
                users.setdefault((u.pw_name, u.inactive), u)
        return sorted(users.values(), key=lambda u: (u.inactive, u.pw_name))

    @deferred
    async def count_users(self, domain: str) -> int:
        total = 0
        for store in await self._routed_stores(domain):
            total += (await VStore.count_users(self, domain) if store is self
                      else await store.count_users(domain))
        return total


def routed_store(home, env: Mapping[str, str] | None = None, *, reactor=None,
                 backend=None, reactor_reads: bool = False) -> RoutedStore:
    """The (unopened) store of *home*: the central backend (``MYSQL_HOST``,
    ``host.mysql``, else SQLite) routing by the home's mcdinfo."""
    from .backend import backend_for_home
    if backend is None:
        backend = backend_for_home(home, env)
    return RoutedStore(backend, home=home, env=env, reactor=reactor,
                       reactor_reads=reactor_reads)


__all__ = ["RoutedStore", "routed_store"]
