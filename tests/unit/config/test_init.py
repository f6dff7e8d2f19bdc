import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from indimail.config import init as init_module
from indimail.config.cdb import make_control_cdb
from indimail.config.control import ControlFiles
from indimail.config.envdir import read_envdir
from indimail.config.init import init_home
from indimail.config.tcprules import TcpRules

from .helpers import tempdir

ME = "mail.example.net"
ENV = {"CONFSPLIT": "5"}  # small queues keep the tests quick


def snapshot(root):
    """Every file and directory under *root* with inode, mtime and content."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    content = handle.read()
            state[path] = (st.st_ino, st.st_mtime_ns, st.st_mode, content)
    return state


class FreshHomeTests(SynchronousTestCase):
    def setUp(self):
        self.root = tempdir(self) / "home"
        self.report = []
        self.home = init_home(self.root, env=ENV, hostname=ME, report=self.report)

    def read(self, *parts):
        return self.root.joinpath(*parts).read_bytes()

    def test_layout(self):
        """init creates control, users, tcp, queue, domains, certs and variables/<service>/."""
        for name in ("control", "users", "tcp", "queue", "domains", "certs",
                     "variables/smtpd", "variables/send", "control/defaultqueue"):
            self.assertTrue((self.root / name).is_dir(), name)
        self.assertTrue(self.home.is_initialised())
        self.assertEqual(self.home.path, self.root)

    def test_control_files(self):
        """The control files hold the lead's defaults, byte for byte."""
        for name in ("me", "defaultdomain", "defaulthost", "plusdomain"):
            self.assertEqual(self.read("control", name), ME.encode() + b"\n", name)
        self.assertEqual(self.read("control", "locals"), b"mail.example.net\nlocalhost\n")
        self.assertEqual(self.read("control", "rcpthosts"), b"mail.example.net\nlocalhost\n")
        self.assertEqual(self.read("control", "virtualdomains"), b"")
        self.assertEqual(self.read("control", "concurrencylocal"), b"10\n")
        self.assertEqual(self.read("control", "concurrencyremote"), b"20\n")
        self.assertEqual(self.read("users", "assign"), b".\n")

    def test_defaultqueue_and_queue(self):
        """control/defaultqueue names one queue under <home>/queue, and queue1 is created."""
        env = read_envdir(self.root / "control" / "defaultqueue", {})
        self.assertEqual(dict(env), {"QUEUE_BASE": str(self.root / "queue"),
                                     "QUEUE_START": "1", "QUEUE_COUNT": "1"})
        queue = self.root / "queue" / "queue1"
        for name in ("mess/0", "todo/4", "info", "local", "remote", "bounce", "lock/trigger"):
            self.assertTrue((queue / name).exists(), name)
        self.assertFalse((queue / "todo" / "5").exists(), "CONFSPLIT is honoured")
        self.assertFalse((self.root / "queue" / "queue2").exists())

    def test_tcp_smtp(self):
        """tcp.smtp relays for loopback only and is compiled to a cdb that says the same."""
        self.assertEqual(self.read("tcp", "tcp.smtp"),
                         b'127.:allow,RELAYCLIENT=""\n::1:allow,RELAYCLIENT=""\n:allow\n')
        self.assertTrue((self.root / "tcp" / "tcp.smtp.cdb").exists())
        rules = TcpRules.load(self.root / "tcp" / "tcp.smtp")
        self.assertTrue(rules.source.endswith(".cdb"))
        self.assertEqual(rules.match("127.0.0.1").assignments, [("RELAYCLIENT", "")])
        self.assertEqual(rules.match("::1").assignments, [("RELAYCLIENT", "")])
        result = rules.match("192.0.2.1")
        self.assertEqual((result.allow, result.assignments), (True, []))

    def test_certificate(self):
        """certs/servercert.pem holds an RSA 2048 key and a self-signed certificate for me, mode 0600."""
        path = self.root / "certs" / "servercert.pem"
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        cert = x509.load_pem_x509_certificate(data)
        self.assertEqual(key.key_size, 2048)
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, ME)
        self.assertEqual(cert.issuer, cert.subject)
        self.assertEqual(cert.public_key().public_numbers(), key.public_key().public_numbers())

    def test_certificate_serves_tls(self):
        """The one PEM file loads as both key and certificate chain of a TLS server context."""
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.root / "certs" / "servercert.pem"))

    def test_second_run_changes_nothing(self):
        """Running init again reports nothing and leaves every file and directory untouched."""
        before = snapshot(self.root)
        report = []
        init_home(self.root, env=ENV, hostname="other.name", report=report)
        self.assertEqual(report, [])
        self.assertEqual(snapshot(self.root), before)

    def test_missing_file_recreated_others_kept(self):
        """A removed file is recreated; an edited one is left as the admin wrote it."""
        (self.root / "control" / "concurrencylocal").unlink()
        (self.root / "control" / "concurrencyremote").write_bytes(b"50\n")
        report = []
        init_home(self.root, env=ENV, hostname=ME, report=report)
        self.assertEqual(report, [f"created {self.root / 'control' / 'concurrencylocal'}"])
        self.assertEqual(self.read("control", "concurrencyremote"), b"50\n")


class DomainTests(SynchronousTestCase):
    def test_domain_lines_exact(self):
        """--domain D: virtualdomains D:D, rcpthosts D, the assign wildcard line before '.', domains/D/."""
        root = tempdir(self) / "home"
        init_home(root, domain="Example.COM", env=ENV, hostname=ME)
        uid, gid = os.getuid(), os.getgid()
        self.assertEqual((root / "control" / "virtualdomains").read_bytes(), b"example.com:example.com\n")
        self.assertEqual((root / "control" / "rcpthosts").read_bytes(),
                         b"mail.example.net\nlocalhost\nexample.com\n")
        self.assertEqual((root / "users" / "assign").read_bytes(),
                         f"+example.com-:example.com:{uid}:{gid}:{root}/domains/example.com:-::\n.\n".encode())
        self.assertTrue((root / "domains" / "example.com").is_dir())

    def test_domain_added_once_to_existing_home(self):
        """--domain on an existing home adds missing lines, keeps '.' last, and never duplicates."""
        root = tempdir(self) / "home"
        init_home(root, env=ENV, hostname=ME)
        (root / "users" / "assign").write_bytes(b"=postmaster:alias:7:7:/var/alias:-::\n.\n")
        make_control_cdb(root / "control", "rcpthosts")
        init_home(root, domain="a.org", env=ENV, hostname=ME)
        init_home(root, domain="b.org", env=ENV, hostname=ME)
        before = snapshot(root)
        report = []
        init_home(root, domain="a.org", env=ENV, hostname=ME, report=report)
        self.assertEqual(report, [])
        self.assertEqual(snapshot(root), before)
        uid, gid = os.getuid(), os.getgid()
        self.assertEqual((root / "users" / "assign").read_bytes(), (
            "=postmaster:alias:7:7:/var/alias:-::\n"
            f"+a.org-:a.org:{uid}:{gid}:{root}/domains/a.org:-::\n"
            f"+b.org-:b.org:{uid}:{gid}:{root}/domains/b.org:-::\n.\n").encode())
        self.assertEqual((root / "control" / "virtualdomains").read_bytes(), b"a.org:a.org\nb.org:b.org\n")
        control = ControlFiles(root / "control")
        self.assertTrue(control.contains("rcpthosts", "b.org"), "the existing rcpthosts.cdb is rebuilt")

    def test_bad_domain_creates_nothing(self):
        """An invalid domain name is a ValueError raised before anything is written."""
        root = tempdir(self) / "home"
        self.assertRaises(ValueError, init_home, root, domain="bad domain:x", env=ENV, hostname=ME)
        self.assertFalse(root.exists())


class OptionTests(SynchronousTestCase):
    def test_queue_count(self):
        """queue_count (else env QUEUE_COUNT) sets QUEUE_COUNT and creates that many queues."""
        root = tempdir(self)
        init_home(root / "a", queue_count=3, env=ENV, hostname=ME)
        self.assertEqual((root / "a" / "control" / "defaultqueue" / "QUEUE_COUNT").read_bytes(), b"3\n")
        self.assertEqual(sorted(p.name for p in (root / "a" / "queue").iterdir()),
                         ["queue1", "queue2", "queue3"])
        init_home(root / "b", env={**ENV, "QUEUE_COUNT": "2"}, hostname=ME)
        self.assertEqual(sorted(p.name for p in (root / "b" / "queue").iterdir()), ["queue1", "queue2"])

    def test_default_home_and_fqdn(self):
        """Without a path $INDIMAIL_HOME is used; without a hostname the FQDN goes to control/me."""
        root = tempdir(self) / "envhome"
        self.patch(init_module, "machine_name", lambda: "fqdn.example.org")
        home = init_home(env={"INDIMAIL_HOME": str(root)})
        self.assertEqual(home.path, root)
        self.assertEqual((root / "control" / "me").read_bytes(), b"fqdn.example.org\n")
        self.assertEqual((root / "control" / "locals").read_bytes(), b"fqdn.example.org\nlocalhost\n")
        self.assertTrue((root / "queue" / "queue1" / "todo" / "150").is_dir(), "default split 151")

    def test_localhost_listed_once(self):
        """When the machine has no FQDN, locals and rcpthosts hold localhost once."""
        root = tempdir(self)
        init_home(root, env=ENV, hostname="localhost")
        self.assertEqual((root / "control" / "locals").read_bytes(), b"localhost\n")
