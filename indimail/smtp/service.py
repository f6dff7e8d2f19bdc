"""Wiring: listeners, the per-connection session environment, reloads.

``make_smtp_service`` returns the ``indimail-smtpd`` MultiService: one
listener per endpoint string (SMTP, submission, SMTPS), sharing one
:class:`~indimail.queue.enqueue.Enqueuer` and one control directory.

Per connection, as tcpserver does for qmail-smtpd: the peer is matched
against ``tcp/tcp.smtp`` (a deny drops the connection before any byte is
sent), ``PROTO``, ``TCPREMOTEIP``, ``TCPREMOTEPORT``, ``TCPLOCALIP``,
``TCPLOCALPORT`` are set, then the rule's assignments are applied.
Connection limits are tcpserver's: ``MAXDAEMONS`` (service environment)
caps the sessions of a listener, ``MAXPERIP`` (service environment or the
tcprules line) the sessions from one IP; over a limit the connection is
closed before any byte is sent (tcpserver's "no ip slots" drop; for
MAXDAEMONS tcpserver stopped accepting, a single process must refuse).
Unset or 0: no limit.  The SMTP worker processes of ``twistd indimail``
share their counts (:mod:`indimail.smtp.limits`), so the limits hold for
the whole service.

The service environment is the process environment, then
``control/defaultqueue/`` (the queue settings IndiMail's svctool copies into
every service's variables), then ``variables/smtpd/``; the submission
listener adds ``variables/submission/`` on top.  It is read at start and on
SIGHUP; control files refresh themselves when they change.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from typing import Callable, Mapping

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints
from twisted.internet.protocol import ServerFactory

from indimail.config.control import ControlFiles, control_recheck
from indimail.config.envdir import read_envdir, service_environment
from indimail.config.environment import Environment
from indimail.config.home import Home
from indimail.config.tcprules import TcpRulesFile
from indimail.fastlog import Logger
from indimail.plugins.api import PluginSetup
from indimail.plugins.chain import DEFAULT_TIMEOUT, PluginChain
from indimail.plugins.loader import CONTROL as PLUGINS_CONTROL
from indimail.plugins.loader import load_plugins
from indimail.queue.enqueue import Enqueuer, QueueThreadPool

from .authsetup import load_auth
from .envrules import RulesFiles
from .limits import LocalLimits
from .protocol import SMTPServerProtocol
from .session import Session
from .settings import load_settings
from .tls import ServerTLS, load_server_tls, smtps_endpoint
from .tlsclients import StartTLS

log = Logger()


def normalise_ip(host: str) -> str:
    """``::ffff:1.2.3.4`` → ``1.2.3.4``; other addresses unchanged."""
    if ":" not in host:     # IPv4 (or no address at all): nothing to unmap
        return host
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return host


def _host_port(address) -> tuple[str, int]:
    host = getattr(address, "host", None) or "unknown"
    return normalise_ip(host), int(getattr(address, "port", 0) or 0)


def tcp_environment(base: Mapping[str, str], peer, local,
                    assignments: list[tuple[str, str | None]]) -> Environment:
    """*base* plus what tcpserver sets for a connection from *peer* to *local*."""
    ip, port = _host_port(peer)
    lip, lport = _host_port(local)
    proto = "TCP6" if ":" in ip else "TCP"
    env = Environment(base).apply([
        ("PROTO", proto), ("TCPREMOTEIP", ip), ("TCPREMOTEPORT", str(port)),
        ("TCPLOCALIP", lip), ("TCPLOCALPORT", str(lport)),
        ("TCPREMOTEHOST", None), ("TCPREMOTEINFO", None),
    ])
    return env.apply(assignments)


def _close_list_pools(result):
    """The MySQL connections of ``.sql`` control lists go with the service."""
    from indimail.policy.lists import close_sql_pools
    close_sql_pools()
    return result


def build_plugin_chain(setup: PluginSetup, clock) -> PluginChain:
    """Load the plugins for *setup* (``control/smtpplugins``, PLUGINn, entry
    points, built-ins) into a chain with the ``PLUGIN_TIMEOUT`` timeout."""
    control = setup.control
    lines = control.lines(PLUGINS_CONTROL) if control.exists(PLUGINS_CONTROL) else None
    plugins = load_plugins(setup, lines)
    try:
        timeout = float(setup.env.get("PLUGIN_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    return PluginChain(plugins, clock, timeout)


class SMTPFactory(ServerFactory):
    """Builds one :class:`SMTPServerProtocol` per accepted connection."""

    protocol = SMTPServerProtocol
    noisy = False

    def __init__(self, *, control: ControlFiles, sink, env: Callable[[], Mapping[str, str]],
                 rules, reactor, plugins: Callable[[], PluginChain] | None = None,
                 pid: int | None = None, tls: bool = False,
                 server_tls: Callable[[], ServerTLS | None] = lambda: None,
                 auth: Callable[[], object] = lambda: None):
        self.control = control
        self.server_tls = server_tls   # returns the current STARTTLS certificate
        self.auth = auth               # returns the current AuthSetup (None: no AUTH)
        self.auth_fail_delay = None    # seconds; None: the protocol's default
        self.tls = tls                 # implicit TLS listener (SMTPS): ESMTPS
        self.sink = sink
        self.env = env                 # returns the current service environment
        self.rules = rules             # has match(ip) -> TcpRuleResult, or None
        self.reactor = reactor
        if plugins is None:
            chain = build_plugin_chain(PluginSetup(control=control, reactor=reactor), reactor)
            plugins = lambda: chain   # noqa: E731
        self.plugins = plugins         # returns the current PluginChain
        self.pid = os.getpid() if pid is None else pid
        self.rules_files = RulesFiles(control, lambda e: load_settings(control, e, pid=self.pid))
        # MAXDAEMONS/MAXPERIP counts: this process's, or shared by the
        # SMTP workers (indimail.smtp.worker sets a SharedLimits)
        self.limits = LocalLimits()

    @property
    def active(self) -> int:
        """Open sessions of this listener (MAXDAEMONS)."""
        return self.limits.active

    @property
    def per_ip(self) -> dict[str, int]:
        """Open sessions per remote IP (MAXPERIP) of in-process counting."""
        return self.limits.per_ip

    def admit(self, ip: str, env: Environment) -> Callable[[], None] | None:
        """Take a session slot for *ip* under MAXDAEMONS and MAXPERIP; the
        returned callable (idempotent) frees it.  None: over a limit, logged
        with tcpserver's wording."""
        got = self.limits.acquire(ip, env.int("MAXPERIP", 0), env.int("MAXDAEMONS", 0))
        if got.release is None:
            if got.limit == "MAXDAEMONS":
                log.info("tcpserver: end {ip} maxdaemons {n}", ip=ip, n=got.count)
            else:
                if got.full:
                    log.warn("smtpd limits table full: cannot count {ip}", ip=ip)
                log.info("tcpserver: no ip slots for {ip}, perIPlimit {n}", ip=ip, n=got.count)
            return None
        return self._opened(got.release)

    @staticmethod
    def _opened(release: Callable[[], None]) -> Callable[[], None]:
        done = []

        def closed() -> None:
            if not done:
                done.append(True)
                release()
        return closed

    def buildProtocol(self, addr):
        ip, _ = _host_port(addr)
        assignments: list[tuple[str, str | None]] = []
        if self.rules is not None:
            try:
                result = self.rules.match(ip)
            except Exception:
                log.failure("tcprules lookup failed for {ip}", ip=ip)
                return None
            if not result.allow:
                log.info("tcpserver: deny {ip}", ip=ip)
                return None
            assignments = list(result.assignments)
        closed = self.admit(ip, Environment(self.env()).apply(assignments))
        if closed is None:
            return None

        def setup(peer, local):
            env = tcp_environment(self.env(), peer, local, assignments)
            ip, port = _host_port(peer)
            lip, lport = _host_port(local)
            session = Session(env=env, remote_ip=ip, remote_port=port,
                              local_ip=lip, local_port=lport, tls=self.tls)
            return session, load_settings(self.control, env, pid=self.pid)

        try:
            proto = self.protocol(setup, self.plugins(), self.sink, self.reactor,
                                  tls=self.tls_options_for(self.server_tls()),
                                  auth=self.auth(), rules=self.rules_files)
        except BaseException:
            closed()
            raise
        proto.on_lost = closed
        if self.auth_fail_delay is not None:
            proto.auth_fail_delay = self.auth_fail_delay
        proto.factory = self
        return proto

    def tls_options_for(self, server_tls: ServerTLS | None):
        """The protocol's ``tls``: a context per session env (TLS_CIPHER_LIST)
        and the tlsclients check after the handshake."""
        if server_tls is None:
            return None
        return StartTLS(server_tls, self.control)


class SMTPService(service.MultiService):
    """The ``indimail-smtpd`` service: listeners plus reload on SIGHUP."""

    def __init__(self, home: Home, *, reactor, env: Mapping[str, str] | None = None,
                 sink=None, rules=None, threadpool=None):
        super().__init__()
        self.setName("indimail-smtpd")
        self.home = home
        self.reactor = reactor
        self.process_env = dict(os.environ if env is None else env)
        # A busy listener looks at each control file at most once a second
        # (CONTROL_RECHECK seconds; 0: at every lookup).
        self.control = ControlFiles(home.control, recheck=control_recheck(self.process_env))
        self.environments: dict[str, Environment] = {}
        self.server_tls: ServerTLS | None = None
        self.auths: dict[str, object] = {}
        self.reload_environment()
        self._own_pool = None
        if sink is None:
            if threadpool is None:   # ours: started and stopped with the service
                threadpool = self._own_pool = QueueThreadPool(4, 16, name="indimail-smtpd-queue")
            sink = Enqueuer(home, self.environments["smtpd"], reactor=reactor,
                            threadpool=threadpool)
        self.sink = sink
        self.plugins = self.load_plugins()   # a broken plugin stops the start here
        self.auth_ready = self.reload_tls_and_auth()   # fires when AUTH is usable
        if rules is None:
            rules = TcpRulesFile(home.tcp / "tcp.smtp")
        self.rules = rules
        self.factories: dict[str, SMTPFactory] = {}
        self._previous_hup = None

    # -- environment ---------------------------------------------------------------
    def reload_environment(self) -> None:
        """Re-read the envdirs (start, SIGHUP)."""
        base: Mapping[str, str] = self.process_env
        queue_dir = self.home.control / "defaultqueue"
        if queue_dir.is_dir():
            base = read_envdir(queue_dir, base)
        smtpd = service_environment(self.home, "smtpd", base)
        # RFC 6409: the submission port requires AUTH unless its envdir
        # unsets REQUIREAUTH (an empty variables/submission/REQUIREAUTH).
        self.environments = {
            "smtpd": smtpd,
            "submission": service_environment(self.home, "submission",
                                              smtpd.set(REQUIREAUTH="1")),
        }

    def load_plugins(self) -> PluginChain:
        setup = PluginSetup(control=self.control, home=self.home,
                            env=self.environments["smtpd"], reactor=self.reactor,
                            options={"sink": self.sink})
        return build_plugin_chain(setup, self.reactor)

    def reload_tls_and_auth(self):
        """Re-read ``certs/servercert.pem`` (and ``clientca.pem``,
        ``clientcrl.pem``) and the AUTH checkers (start, SIGHUP)."""
        self.server_tls = load_server_tls(self.home.certs, self.environments["smtpd"])
        auths = {flavour: load_auth(self.home, env, self.reactor)
                 for flavour, env in self.environments.items()}
        loads = [a.load() for a in auths.values() if a is not None]
        d = defer.gatherResults(loads, consumeErrors=True)

        def loaded(_):   # sessions keep the old checkers until the new are read
            self.auths = auths
        d.addCallback(loaded)
        d.addErrback(lambda f: log.failure("loading the AUTH password file failed", f))
        return d

    def reload(self):
        """SIGHUP: new sessions see the re-read environment, certificate and
        checkers; open ones keep theirs.  Returns a Deferred for the checkers."""
        try:
            self.control.refresh()
            self.reload_environment()
            self.plugins = self.load_plugins()
            loaded = self.reload_tls_and_auth()
        except Exception:
            log.failure("reload of the smtpd environment failed; keeping the old one")
            return defer.succeed(None)
        log.info("indimail-smtpd: configuration reloaded")
        return loaded

    # -- listeners -------------------------------------------------------------------
    def factory(self, flavour: str = "smtpd", tls: bool = False) -> SMTPFactory:
        """The factory of sessions with the *flavour* environment."""
        key = f"{flavour}{'+tls' if tls else ''}"
        if key not in self.factories:
            self.factories[key] = SMTPFactory(
                control=self.control, sink=self.sink,
                env=lambda: self.environments[flavour], rules=self.rules,
                reactor=self.reactor, tls=tls, server_tls=lambda: self.server_tls,
                plugins=lambda: self.plugins,
                auth=lambda: self.auths.get(flavour))
        return self.factories[key]

    def add_listener(self, name: str, description: str, flavour: str = "smtpd",
                     tls: bool = False) -> None:
        """Listen on endpoint string *description* with the *flavour* environment."""
        parse = smtps_endpoint if tls else endpoints.serverFromString
        endpoint = parse(self.reactor, description)
        listener = StreamServerEndpointService(endpoint, self.factory(flavour, tls))
        listener._raiseSynchronously = True
        listener.setName(name)
        listener.setServiceParent(self)

    # -- SIGHUP ------------------------------------------------------------------------
    def startService(self) -> None:
        if self._own_pool is not None and not self._own_pool.started:
            self._own_pool.start()
        super().startService()
        self._install_hup()

    def stopService(self):
        """Stop listening, then let queue writes in flight finish."""
        self._remove_hup()
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(self._stop_pool)
        d.addBoth(_close_list_pools)
        return d

    def _stop_pool(self, result):
        if self._own_pool is not None and self._own_pool.started:
            self._own_pool.stop()
        return result

    def _install_hup(self) -> None:
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._on_hup)
        except ValueError:   # not the main thread (e.g. embedded in tests)
            self._previous_hup = None

    def _remove_hup(self) -> None:
        if self._previous_hup is not None:
            try:
                signal.signal(signal.SIGHUP, self._previous_hup)
            except ValueError:
                pass
            self._previous_hup = None

    def _on_hup(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reload)
        previous = self._previous_hup
        if callable(previous):
            previous(signum, frame)


def make_smtp_service(home: Home, *, reactor=None,
                      smtp: str | None = "tcp:2525:interface=127.0.0.1",
                      submission: str | None = None, smtps: str | None = None,
                      env: Mapping[str, str] | None = None) -> service.MultiService:
    """The ``indimail-smtpd`` MultiService; a listener per endpoint given."""
    if reactor is None:
        from twisted.internet import reactor  # noqa: F811
    top = SMTPService(home, reactor=reactor, env=env)
    if smtp:
        top.add_listener("smtp", smtp)
    if submission:
        top.add_listener("submission", submission, "submission")
    if smtps:
        top.add_listener("smtps", smtps, tls=True)
    return top
