import ipaddress

import cdblib
from twisted.trial.unittest import SynchronousTestCase

from indimail.config.control import ControlFileError
from indimail.config.tcprules import (TcpRules, TcpRulesFile, compile_rules, compile_tcprules,
                                      ipv4_bits, ipv6_bits)

from .helpers import tempdir

RULES = b"""# tcp.smtp
127.:allow,RELAYCLIENT=""
::1:allow,RELAYCLIENT=""
10.0.0.5:deny
10.0.:allow,ZONE="ten-zero"
1.2.3.37-53:allow,RANGE='yes'
10.2-3.:allow,CLASS=b
10.1.0.0/16:allow,CIDR="16"
10.1.2.0/24:allow,CIDR="24"
192.168.1.7:allow,RELAYCLIENT="",!GREYIP,DATABYTES="1000,2000"
2001:db8::/32:allow,V6NET="32"
2001:db8:1::/48:deny
2001:db8::25:allow,V6HOST="1"
:allow,GREYIP="127.0.0.1@1999"
"""


def rules_both_ways(case, text=RULES):
    """(rules read from the text, rules read from the compiled cdb)."""
    home = tempdir(case)
    (home / "tcp.smtp").write_bytes(text)
    from_text = TcpRules.load(home / "tcp.smtp")
    compile_tcprules(home / "tcp.smtp")
    from_cdb = TcpRules.load(home / "tcp.smtp")
    case.assertTrue(from_cdb.source.endswith("tcp.smtp.cdb"))
    case.assertTrue(from_text.source.endswith("tcp.smtp"))
    return from_text, from_cdb


class MatchTests(SynchronousTestCase):
    def check(self, ip, allow, assignments, rule=None):
        for rules in rules_both_ways(self):
            result = rules.match(ip)
            self.assertEqual((result.allow, result.assignments), (allow, assignments), (ip, rules.source))
            if rule is not None:
                self.assertEqual(result.rule, rule)

    def test_exact_ipv4_beats_prefix(self):
        """An exact address rule wins over a prefix rule covering it."""
        self.check("10.0.0.5", False, [], "10.0.0.5")
        self.check("10.0.0.6", True, [("ZONE", "ten-zero")], "10.0.")

    def test_prefix(self):
        """A prefix ending in '.' covers every address starting with it."""
        self.check("127.0.0.1", True, [("RELAYCLIENT", "")], "127.")
        self.check("127.9.9.9", True, [("RELAYCLIENT", "")], "127.")

    def test_ranges(self):
        """1.2.3.37-53 covers .37 to .53 only; 10.2-3. stands for 10.2. and 10.3."""
        self.check("1.2.3.37", True, [("RANGE", "yes")], "1.2.3.37")
        self.check("1.2.3.53", True, [("RANGE", "yes")], "1.2.3.53")
        self.check("1.2.3.54", True, [("GREYIP", "127.0.0.1@1999")], "")
        self.check("1.2.3.36", True, [("GREYIP", "127.0.0.1@1999")], "")
        self.check("10.3.200.1", True, [("CLASS", "b")], "10.3.")

    def test_cidr_longest_prefix_wins(self):
        """CIDR rules match by the longest prefix, after exact and dotted-prefix rules."""
        self.check("10.1.2.3", True, [("CIDR", "24")])
        self.check("10.1.9.3", True, [("CIDR", "16")])
        self.check("10.9.9.9", True, [("GREYIP", "127.0.0.1@1999")], "")

    def test_assignment_forms(self):
        """Quoted values keep commas; !VAR unsets; unquoted VAR=value runs to the comma."""
        self.check("192.168.1.7", True, [("RELAYCLIENT", ""), ("GREYIP", None),
                                         ("DATABYTES", "1000,2000")])

    def test_ipv6(self):
        """IPv6: exact (any spelling), CIDR with longest prefix, loopback."""
        self.check("::1", True, [("RELAYCLIENT", "")])
        self.check("0:0:0:0:0:0:0:1", True, [("RELAYCLIENT", "")])
        self.check("2001:db8::25", True, [("V6HOST", "1")])
        self.check("2001:db8:1::9", False, [])
        self.check("2001:db8:2::9", True, [("V6NET", "32")])
        self.check("2001:db9::1", True, [("GREYIP", "127.0.0.1@1999")], "")

    def test_ipv4_mapped_ipv6_is_ipv4(self):
        """::ffff:a.b.c.d is matched as a.b.c.d, as tcpserver does."""
        self.check("::ffff:127.0.0.1", True, [("RELAYCLIENT", "")], "127.")

    def test_no_file_allows(self):
        """With no rules file at all every client is allowed with no assignments."""
        rules = TcpRules.load(tempdir(self) / "tcp.smtp")
        result = rules.match("10.0.0.5")
        self.assertEqual((result.allow, result.assignments, result.rule), (True, [], None))

    def test_no_matching_rule_allows(self):
        """Without an empty-address rule, an unmatched client is allowed."""
        rules = TcpRules.from_records(compile_rules(b"10.:deny\n"))
        self.assertTrue(rules.match("11.0.0.1").allow)
        self.assertFalse(rules.match("10.0.0.1").allow)

    def test_first_duplicate_wins(self):
        """When two lines give the same address, the first one counts (cdb_find)."""
        for rules in rules_both_ways(self, b"1.2.3.4:deny\n1.2.3.4:allow\n"):
            self.assertFalse(rules.match("1.2.3.4").allow)


class EncodingTests(SynchronousTestCase):
    def test_compiled_keys_and_values(self):
        """The cdb holds upstream's keys and values: D\\0, +VAR=value\\0, -VAR\\0, expanded ranges,
        full-form IPv6, _bits / ^bits for CIDR."""
        home = tempdir(self)
        (home / "tcp.smtp").write_bytes(RULES)
        reader = cdblib.Reader(compile_tcprules(home / "tcp.smtp").read_bytes())
        self.assertEqual(reader.get(b"10.0.0.5"), b"D\0")
        self.assertEqual(reader.get(b"127."), b"+RELAYCLIENT=\0")
        self.assertEqual(reader.get(b"192.168.1.7"),
                         b"+RELAYCLIENT=\0-GREYIP\0+DATABYTES=1000,2000\0")
        self.assertEqual([reader.get(f"1.2.3.{n}".encode()) for n in (36, 37, 45, 53, 54)],
                         [None, b"+RANGE=yes\0", b"+RANGE=yes\0", b"+RANGE=yes\0", None])
        self.assertEqual(reader.get(b"0000:0000:0000:0000:0000:0000:0000:0001"), b"+RELAYCLIENT=\0")
        self.assertEqual(reader.get(b"_0000e0g00000000p"), b"+CIDR=16\0")
        self.assertEqual(reader.get(b""), b"+GREYIP=127.0.0.1@1999\0")
        self.assertEqual(reader.get(b"2001:db8:1::/48"), None)
        self.assertIsNotNone(reader.get(b"^" + ipv6_bits(ipaddress.IPv6Address("2001:db8:1::").packed, 48)))

    def test_ipv4_bits_letters(self):
        """IPv4 CIDR bits: a 1 at position k is 'abc...z123456'[k], a 0 is '0'."""
        self.assertEqual(ipv4_bits(bytes([10, 1, 0, 0]), 16), b"0000e0g00000000p")
        self.assertEqual(ipv4_bits(bytes([255, 255, 255, 255]), 32),
                         b"abcdefghijklmnopqrstuvwxyz123456")

    def test_ipv6_bits_counter(self):
        """IPv6 CIDR bits: the n-th 1-bit is byte 96+n, a 0 is '0'."""
        self.assertEqual(ipv6_bits(bytes([0xA0]) + bytes(15), 8), b"`0a00000")


class ErrorTests(SynchronousTestCase):
    def assertBadLine(self, text, lineno):
        with self.assertRaises(ControlFileError) as caught:
            compile_rules(b"# ok\n127.:allow\n" + text + b"\n", "tcp.smtp")
        self.assertEqual(caught.exception.lineno, lineno)
        self.assertTrue(str(caught.exception).startswith(f"tcp.smtp:{lineno}: "), str(caught.exception))

    def test_malformed_lines(self):
        """Each malformed line is a ControlFileError naming the file and line."""
        for bad in (b"1.2.3.4", b"1.2.3.4:maybe", b"1.2.3.4:allow,X", b'1.2.3.4:allow,X="open',
                    b"1.2.3.4:allowX", b"1.2.3.a-b:allow", b"10.0.0.0/33:allow", b"10/16:allow",
                    b"2001:db8::/129:allow", b"2001:zz8::1:allow", b"1.2.3.400:allow",
                    b"1.2.3.4:allow,!"):
            self.assertBadLine(bad, 3)

    def test_load_reports_bad_text(self):
        """TcpRules.load on a bad text file raises with the file's path and the line."""
        home = tempdir(self)
        (home / "tcp.smtp").write_bytes(b"127.:allow\nbogus\n")
        with self.assertRaises(ControlFileError) as caught:
            TcpRules.load(home / "tcp.smtp")
        self.assertIn(f"{home / 'tcp.smtp'}:2:", str(caught.exception))

    def test_bad_line_keeps_old_cdb(self):
        """A failed compile leaves the previous cdb in place."""
        home = tempdir(self)
        (home / "tcp.smtp").write_bytes(b"1.2.3.4:deny\n")
        target = compile_tcprules(home / "tcp.smtp")
        before = target.read_bytes()
        (home / "tcp.smtp").write_bytes(b"1.2.3.4:nope\n")
        self.assertRaises(ControlFileError, compile_tcprules, home / "tcp.smtp")
        self.assertEqual(target.read_bytes(), before)
        self.assertEqual(sorted(p.name for p in home.iterdir()), ["tcp.smtp", "tcp.smtp.cdb"])


class RulesFileTests(SynchronousTestCase):
    def test_reloads_on_change(self):
        """TcpRulesFile follows edits of the text and a newly compiled cdb."""
        home = tempdir(self)
        path = home / "tcp.smtp"
        path.write_bytes(b"1.2.3.4:allow\n")
        rules = TcpRulesFile(path)
        self.assertTrue(rules.match("1.2.3.4").allow)
        path.write_bytes(b"1.2.3.4:deny,X=\"longer\"\n")
        self.assertFalse(rules.match("1.2.3.4").allow)
        path.write_bytes(b"1.2.3.4:allow,FROM=\"text\"\n")
        compile_tcprules(path)
        self.assertEqual(rules.match("1.2.3.4").assignments, [("FROM", "text")])
        path.write_bytes(b"1.2.3.4:deny\n")
        self.assertTrue(rules.match("1.2.3.4").allow, "the cdb is preferred over the text")
