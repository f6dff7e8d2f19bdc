"""The client lists: badip, badhost (connect), badhelo and ENFORCE_FQDN_HELO (HELO)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from indimail.config.cdb import make_control_cdb

from .support import REMOTE_IP, PolicyHarness

BAD_HELO = "553 sorry, your HELO/EHLO greeting is in my badhelo list (#5.7.1)"


class BadIPTest(TestCase):

    async def test_listed_ip_gets_421_and_is_closed(self):
        """BADIPCHECK + a listed IP: upstream's 421 greeting line, then the
        connection is closed."""
        h = PolicyHarness(self, {"badip": f"{REMOTE_IP}\n"}, env={"BADIPCHECK": ""})
        self.assertEqual(await h.connect(), [
            f"421 mx.example.com sorry, your IP ({REMOTE_IP}) is temporarily denied (#4.7.1)"])
        self.assertTrue(h.closed)
        other = PolicyHarness(self, {"badip": "198.51.100.1\n"}, env={"BADIPCHECK": "1"})
        self.assertTrue((await other.connect())[0].startswith("220 "))
        self.assertFalse(other.closed)

    async def test_badip_variable_names_the_file(self):
        """BADIP names the list (here in cdb form); without BADIP or BADIPCHECK
        the list is not consulted."""
        h = PolicyHarness(self, {"myips": f"{REMOTE_IP}\n"}, env={"BADIP": "myips"})
        make_control_cdb(h.directory, "myips")
        (h.control.directory / "myips").unlink()
        self.assertEqual((await h.connect())[0][:3], "421")
        off = PolicyHarness(self, {"badip": f"{REMOTE_IP}\n"})
        self.assertEqual((await off.connect())[0][:3], "220")

    async def test_badip_regex_with_qregex(self):
        """With QREGEX the badip lines are regular expressions."""
        h = PolicyHarness(self, {"badip": "^192\\.0\\.2\\.\n"},
                          env={"BADIPCHECK": "", "QREGEX": "1"})
        self.assertEqual((await h.connect())[0][:3], "421")


class BadHostTest(TestCase):

    async def test_listed_host_refused(self):
        """BADHOSTCHECK: TCPREMOTEHOST matching a badhost regex gets upstream's
        553 in place of the greeting; without BADHOSTCHECK/BADHOST the file is ignored."""
        env = {"BADHOSTCHECK": "", "TCPREMOTEHOST": "dsl-1-2.Dynamic.example"}
        h = PolicyHarness(self, {"badhost": "dynamic\\.example$\n"}, env=env)
        self.assertEqual(await h.connect(), ["553 mx.example.com sorry, your host "
                                             "(dsl-1-2.Dynamic.example) has been denied (#5.7.1)"])
        self.assertTrue(h.closed)
        off = PolicyHarness(self, {"badhost": "dynamic\\.example$\n"},
                            env={"TCPREMOTEHOST": "dsl-1-2.Dynamic.example"})
        self.assertEqual((await off.connect())[0][:3], "220")

    async def test_negated_line_requires_a_match(self):
        """A ``!regex`` line refuses every host it does not match; BADHOST names the file."""
        files = {"hosts": "!\\.good\\.example$\n"}
        ok = PolicyHarness(self, files, env={"BADHOST": "hosts",
                                             "TCPREMOTEHOST": "a.good.example"})
        self.assertEqual((await ok.connect())[0][:3], "220")
        bad = PolicyHarness(self, files, env={"BADHOST": "hosts",
                                              "TCPREMOTEHOST": "a.evil.example"})
        self.assertEqual((await bad.connect())[0][:3], "553")


class BadHeloTest(TestCase):

    async def test_listed_helo_refused(self):
        """BADHELOCHECK: a greeting in badhelo (exact or @domain) gets upstream's
        553 and the refused greeting is not remembered."""
        h = PolicyHarness(self, {"badhelo": "friend\n@spam.example\n"},
                          env={"BADHELOCHECK": ""})
        await h.connect()
        self.assertEqual(await h.ask("HELO FRIEND"), [BAD_HELO])
        self.assertIsNone(h.session.helo)
        self.assertEqual(await h.ask("EHLO x@spam.example"), [BAD_HELO])
        self.assertEqual(await h.code("EHLO mail.fine.example"), 250)

    async def test_badhelo_variable_and_off_switch(self):
        """BADHELO names the file; without either variable badhelo is not used."""
        h = PolicyHarness(self, {"helos": "friend\n", "badhelo": "friend\n"},
                          env={"BADHELO": "helos"})
        await h.connect()
        self.assertEqual(await h.ask("HELO friend"), [BAD_HELO])
        off = PolicyHarness(self, {"badhelo": "friend\n"})
        await off.connect()
        self.assertEqual(await off.code("HELO friend"), 250)

    async def test_badhelo_regex(self):
        """With QREGEX the badhelo lines are regular expressions."""
        h = PolicyHarness(self, {"badhelo": "^[0-9.]+$\n"},
                          env={"BADHELOCHECK": "", "QREGEX": "1"})
        await h.connect()
        self.assertEqual(await h.ask("HELO 10.1.2.3"), [BAD_HELO])
        self.assertEqual(await h.code("HELO mail.example.net"), 250)

    async def test_own_name_refused_for_strangers(self):
        """With the check on, a stranger greeting with our name or IP is refused;
        a relay client is not."""
        h = PolicyHarness(self, {}, env={"BADHELOCHECK": ""})
        await h.connect()
        self.assertEqual(await h.ask("HELO mx.example.com"), [BAD_HELO])
        self.assertEqual(await h.ask("HELO [192.0.2.1]"), [BAD_HELO])
        relay = PolicyHarness(self, {}, env={"BADHELOCHECK": "", "RELAYCLIENT": ""})
        await relay.connect()
        self.assertEqual(await relay.code("HELO mx.example.com"), 250)

    async def test_enforce_fqdn_helo(self):
        """ENFORCE_FQDN_HELO: a dotless greeting gets 451 and the connection
        closes; relay clients are exempt."""
        h = PolicyHarness(self, {}, env={"ENFORCE_FQDN_HELO": ""})
        await h.connect()
        self.assertEqual(await h.ask("EHLO localbox"),
                         ["451 unable to accept non-FQDN HELO (#4.3.0)"])
        self.assertTrue(h.closed)
        ok = PolicyHarness(self, {}, env={"ENFORCE_FQDN_HELO": ""})
        await ok.connect()
        self.assertEqual(await ok.code("EHLO box.example.net"), 250)
        relay = PolicyHarness(self, {}, env={"ENFORCE_FQDN_HELO": "", "RELAYCLIENT": ""})
        await relay.connect()
        self.assertEqual(await relay.code("EHLO localbox"), 250)
