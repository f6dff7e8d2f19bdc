"""The sender and recipient list plugins through the SMTP protocol:
badmailfrom, badrcptto, goodrcptto, blackholedsender, blackholedrcpt, spamignore."""

from __future__ import annotations

import inspect
import os

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from indimail.config.control import ControlFiles
from indimail.config.environment import Environment
from indimail.plugins.api import PluginSetup, Verdict
from indimail.plugins.context import HookContext
from indimail.policy.badlists import PLUGINS
from indimail.smtp.session import Session, Transaction

from .support import PolicyHarness, write_control

BAD_SENDER = "553 sorry, your envelope sender has been denied (#5.7.1)"
BAD_RCPT = "553 sorry, your envelope recipient has been denied (#5.7.1)"


class BadMailFromTest(TestCase):

    async def test_listed_sender_refused(self):
        """A sender in badmailfrom (exact or @domain) gets upstream's 553; others pass."""
        h = PolicyHarness(self, {"badmailfrom": "spam@bad.example\n@junk.example\n"})
        await h.start()
        self.assertEqual(await h.ask("MAIL FROM:<Spam@Bad.Example>"), [BAD_SENDER])
        self.assertEqual(await h.ask("MAIL FROM:<any@junk.example>"), [BAD_SENDER])
        self.assertEqual(await h.code("MAIL FROM:<ok@good.example>"), 250)

    async def test_badmailpatterns_and_variables(self):
        """badmailpatterns wildmat lines refuse senders; BADMAILFROM and
        BADMAILPATTERNS name other files instead."""
        files = {"badmailpatterns": "*@earthlink.net\n!fred@earthlink.net\n",
                 "bmf2": "x@y.example\n", "bmp2": "*@pat.example\n"}
        h = PolicyHarness(self, files)
        await h.start()
        self.assertEqual(await h.ask("MAIL FROM:<joe@earthlink.net>"), [BAD_SENDER])
        self.assertEqual(await h.code("MAIL FROM:<fred@earthlink.net>"), 250)
        h2 = PolicyHarness(self, files, env={"BADMAILFROM": "bmf2", "BADMAILPATTERNS": "bmp2"})
        await h2.start()
        self.assertEqual(await h2.code("MAIL FROM:<joe@earthlink.net>"), 250)
        self.assertEqual(await h2.ask("MAIL FROM:<x@y.example>"), [BAD_SENDER])
        self.assertEqual(await h2.ask("MAIL FROM:<a@pat.example>"), [BAD_SENDER])

    async def test_applies_to_relay_clients(self):
        """Upstream checks badmailfrom for every client, RELAYCLIENT included."""
        h = PolicyHarness(self, {"badmailfrom": "spam@bad.example\n"}, env={"RELAYCLIENT": ""})
        await h.start()
        self.assertEqual(await h.ask("MAIL FROM:<spam@bad.example>"), [BAD_SENDER])

    async def test_broken_list_is_a_temporary_failure(self):
        """A list that cannot be read (a corrupt cdb) answers 451, as
        upstream's err_addressmatch()."""
        h = PolicyHarness(self, {"badmailfrom.cdb": b"junk"})
        await h.start()
        self.assertEqual(await h.ask("MAIL FROM:<a@b.example>"),
                         ["451 Requested action aborted: local system failure (#4.3.0)"])


class RecipientListsTest(TestCase):

    async def test_badrcptto_refuses_and_goodrcptto_overrides(self):
        """badrcptto/badrcptpatterns refuse recipients with 553 unless goodrcptto
        or goodrcptpatterns list them."""
        h = PolicyHarness(self, {"badrcptto": "@example.com\n", "badrcptpatterns": "info*\n",
                                 "goodrcptto": "boss@example.com\n",
                                 "goodrcptpatterns": "*@keep.example.com\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.ask("RCPT TO:<joe@example.com>"), [BAD_RCPT])
        self.assertEqual(await h.ask("RCPT TO:<info@elsewhere.example>"), [BAD_RCPT])
        self.assertEqual(await h.code("RCPT TO:<boss@example.com>"), 250)
        self.assertEqual(h.session.transaction.notes["goodrcptto"]["boss@example.com"], True)

    async def test_goodrcptpatterns_override(self):
        """A recipient matching goodrcptpatterns bypasses badrcptto."""
        h = PolicyHarness(self, {"badrcptto": "@example.com\n",
                                 "goodrcptpatterns": "sales@*\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.code("RCPT TO:<sales@example.com>"), 250)
        self.assertEqual(await h.ask("RCPT TO:<joe@example.com>"), [BAD_RCPT])

    async def test_blackholedrcpt_discards_one_recipient(self):
        """A blackholed recipient gets 250 but is not queued; the others are."""
        h = PolicyHarness(self, {"blackholedrcpt": "hole@example.com\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.code("RCPT TO:<hole@example.com>"), 250)
        self.assertEqual(await h.code("RCPT TO:<joe@example.com>"), 250)
        self.assertTrue((await h.message())[-1].startswith("250 ok"))
        [message] = h.sink.messages
        self.assertEqual(message.finished, ("a@sender.example", ["joe@example.com"]))

    async def test_blackholedrcpt_only_message_is_dropped(self):
        """When every recipient is blackholed (blackholedrcptpatterns here) the
        client sees 250 after DATA and nothing is queued."""
        h = PolicyHarness(self, {"blackholedrcptpatterns": "*@example.com\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.code("RCPT TO:<x@example.com>"), 250)
        self.assertTrue((await h.message())[-1].startswith("250 ok"))
        self.assertTrue(all(m.finished is None for m in h.sink.messages))

    async def test_blackholedrcpt_respects_relay_and_goodrcptto(self):
        """A blackholed recipient we do not relay for is still refused (upstream
        checks relaying first); goodrcptto exempts a recipient; BLACKHOLERCPT
        names another file."""
        h = PolicyHarness(self, {"blackholedrcpt": "@remote.example\nkeep@example.com\n",
                                 "goodrcptto": "keep@example.com\n", "bh2": "z@example.com\n"})
        await h.start()
        await h.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h.code("RCPT TO:<x@remote.example>"), 553)
        self.assertEqual(await h.code("RCPT TO:<keep@example.com>"), 250)
        await h.message()
        [message] = h.sink.messages
        self.assertEqual(message.finished[1], ["keep@example.com"])
        h2 = PolicyHarness(self, {"bh2": "z@example.com\n"}, env={"BLACKHOLERCPT": "bh2"})
        await h2.start()
        await h2.ask("MAIL FROM:<a@sender.example>")
        self.assertEqual(await h2.code("RCPT TO:<z@example.com>"), 250)
        self.assertTrue((await h2.message())[-1].startswith("250 ok"))
        self.assertEqual(h2.sink.messages[0].finished if h2.sink.messages else None, None)


class BlackholedSenderTest(TestCase):

    async def test_blackholed_sender_is_accepted_and_dropped(self):
        """A blackholed sender sees 250 to MAIL, RCPT and DATA; nothing is queued;
        the next transaction from another sender is queued normally."""
        h = PolicyHarness(self, {"blackholedsender": "@hole.example\n",
                                 "blackholedpatterns": "bulk*@*\n"})
        await h.start()
        self.assertEqual(await h.code("MAIL FROM:<x@hole.example>"), 250)
        self.assertEqual(await h.code("RCPT TO:<joe@example.com>"), 250)
        self.assertTrue((await h.message())[-1].startswith("250 ok"))
        self.assertTrue(all(m.finished is None for m in h.sink.messages))
        self.assertEqual(await h.code("MAIL FROM:<bulk1@any.example>"), 250)
        self.assertEqual(await h.code("RCPT TO:<joe@example.com>"), 250)
        await h.message()
        self.assertTrue(all(m.finished is None for m in h.sink.messages))
        self.assertEqual(await h.code("MAIL FROM:<fine@any.example>"), 250)
        self.assertEqual(await h.code("RCPT TO:<joe@example.com>"), 250)
        await h.message()
        self.assertEqual([m.finished for m in h.sink.messages if m.finished],
                         [("fine@any.example", ["joe@example.com"])])

    async def test_badmailfrom_wins_over_blackhole(self):
        """A sender in both badmailfrom and blackholedsender is refused, as upstream."""
        h = PolicyHarness(self, {"blackholedsender": "x@both.example\n",
                                 "badmailfrom": "x@both.example\n"})
        await h.start()
        self.assertEqual(await h.ask("MAIL FROM:<x@both.example>"), [BAD_SENDER])


class SpamIgnoreTest(TestCase):

    async def test_listed_sender_skips_spam_filter(self):
        """With SPAMFILTER set, a sender in spamignore queues its message without
        SPAMFILTER in the environment; another sender keeps it."""
        h = PolicyHarness(self, {"spamignore": "@trusted.example\n"},
                          env={"SPAMFILTER": "/usr/bin/bogofilter -p"})
        await h.start()
        await h.ask("MAIL FROM:<a@trusted.example>")
        self.assertTrue(h.session.transaction.notes.get("spamignore"))
        await h.ask("RCPT TO:<joe@example.com>")
        await h.message()
        await h.ask("MAIL FROM:<a@other.example>")
        await h.ask("RCPT TO:<joe@example.com>")
        await h.message()
        first, second = h.sink.messages
        self.assertNotIn("SPAMFILTER", first.env)
        self.assertEqual(second.env["SPAMFILTER"], "/usr/bin/bogofilter -p")
        # without SPAMFILTER the list is not consulted at all
        off = PolicyHarness(self, {"spamignore": "@trusted.example\n"})
        await off.start()
        await off.ask("MAIL FROM:<a@trusted.example>")
        self.assertNotIn("spamignore", off.session.transaction.notes)


class EmptyListsTest(TestCase):
    """Lists whose files are absent answer at once; written later, they apply."""

    def setUp(self):
        self.clock = Clock()
        clock = self.clock

        class TimedReactor:   # the real reactor's threads, the test's time
            seconds = clock.seconds
            getThreadPool = reactor.getThreadPool
            callFromThread = reactor.callFromThread

        self.directory = self.mktemp()
        os.makedirs(self.directory)
        write_control(self.directory, {"rcpthosts": "example.com\n"})
        setup = PluginSetup(control=ControlFiles(self.directory), reactor=TimedReactor())
        self.plugins = {name: factory(setup) for name, factory in PLUGINS.items()}
        session = Session(env=Environment({"SPAMFILTER": "x"}), remote_ip="192.0.2.9")
        self.ctx = HookContext(session, Transaction("a@example.net"), None, Clock(), Logger())

    async def answer(self, name: str, hook: str, value: str):
        result = getattr(self.plugins[name], "hook_" + hook)(self.ctx, value)
        return (await result if inspect.iscoroutine(result) else result), result

    async def test_absent_lists_answer_without_a_coroutine(self):
        """Once a hook has found its files absent, its next calls within the
        check interval return None itself, not a coroutine the plugin chain
        would have to drive; goodrcptto still records its finding."""
        hooks = [("badmailfrom", "mail"), ("spamignore", "mail"),
                 ("blackholedsender", "mail"), ("goodrcptto", "rcpt"),
                 ("badrcptto", "rcpt"), ("blackholedrcpt", "rcpt")]
        for name, hook in hooks:
            found, first = await self.answer(name, hook, "joe@example.com")
            self.assertIsNone(found, name)
            self.assertTrue(inspect.iscoroutine(first), name)
        for name, hook in hooks:
            found, again = await self.answer(name, hook, "joe@example.com")
            self.assertIsNone(again, name)
        self.assertEqual(self.ctx.transaction.notes["goodrcptto"], {"joe@example.com": False})

    async def test_list_written_later_applies_after_the_interval(self):
        """A badrcptto written while the list was known absent refuses the
        recipient once the check interval has passed, as the slow path would."""
        self.assertIsNone((await self.answer("badrcptto", "rcpt", "joe@example.com"))[0])
        write_control(self.directory, {"badrcptto": "joe@example.com\n"})
        self.clock.advance(0.5)
        self.assertIsNone((await self.answer("badrcptto", "rcpt", "joe@example.com"))[0])
        self.clock.advance(0.5)
        result, _ = await self.answer("badrcptto", "rcpt", "joe@example.com")
        self.assertEqual((result.verdict, result.code), (Verdict.DENY, 553))

    async def test_broken_goodrcptto_still_answers_451_after_a_known_empty_badrcptto(self):
        """badrcptto asks goodrcptto first; with badrcptto known empty but
        goodrcptto due for a look (and now broken), the answer is still 451."""
        self.assertIsNone((await self.answer("badrcptto", "rcpt", "joe@example.com"))[0])
        self.clock.advance(1)    # joe's goodrcptto finding is noted: only badrcptto is looked at
        self.assertIsNone((await self.answer("badrcptto", "rcpt", "joe@example.com"))[0])
        write_control(self.directory, {"goodrcptto.cdb": b"junk"})
        self.clock.advance(0.5)  # badrcptto known empty, goodrcptto not
        result, _ = await self.answer("badrcptto", "rcpt", "ann@example.com")
        self.assertEqual((result.verdict, result.code), (Verdict.DENYSOFT, 451))

    async def test_known_empty_goodrcptto_keeps_an_earlier_finding(self):
        """A recipient found good earlier in the transaction stays good."""
        await self.answer("goodrcptto", "rcpt", "other@example.com")
        self.ctx.transaction.notes["goodrcptto"]["joe@example.com"] = True
        self.assertEqual((await self.answer("goodrcptto", "rcpt", "joe@example.com")), (None, None))
        self.assertTrue(self.ctx.transaction.notes["goodrcptto"]["joe@example.com"])
