"""twistd's log file is written once per reactor turn while the service runs."""

import io
import threading

from twisted.internet.task import Clock
from twisted.logger import Logger, globalLogPublisher, textFileLogObserver
from twisted.trial.unittest import TestCase

from indimail.logbuffer import LogBuffering, TurnBufferedFile


class CountingFile(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


class ThreadClock(Clock):
    def __init__(self):
        super().__init__()
        self.from_threads = []
        self.triggers = []

    def callFromThread(self, f, *args):
        self.from_threads.append((f, args))

    def addSystemEventTrigger(self, phase, event, f):
        self.triggers.append((phase, event, f))


class LogBufferingTests(TestCase):
    def setUp(self):
        self.out = CountingFile()
        self.observer = textFileLogObserver(self.out)
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)
        self.clock = ThreadClock()
        self.log = Logger(namespace="qmail-send")

    def test_lines_of_one_turn_are_one_write_in_order(self):
        buffering = LogBuffering(self.clock)
        buffering.startService()
        for n in range(6):
            self.log.info("line {n}", n=n)
        self.assertEqual(self.out.writes, 0)
        self.clock.advance(0)
        self.assertEqual(self.out.writes, 1)
        self.assertEqual([l.split("] ", 1)[1] for l in self.out.getvalue().splitlines()],
                         [f"line {n}" for n in range(6)])
        buffering.stopService()

    def test_stop_writes_the_rest_and_restores_the_file(self):
        buffering = LogBuffering(self.clock)
        buffering.startService()
        self.log.info("pending at stop")
        buffering.stopService()
        self.assertIn("pending at stop", self.out.getvalue())
        self.assertIs(self.observer._outFile, self.out)
        self.log.info("after stop")
        self.assertIn("after stop", self.out.getvalue())   # directly again

    def test_lines_from_threads_reach_the_reactor(self):
        buffered = TurnBufferedFile(self.out, self.clock)
        t = threading.Thread(target=buffered.write, args=("from a thread\n",))
        t.start()
        t.join()
        [(drain, args)] = self.clock.from_threads
        drain(*args)
        self.assertEqual(self.out.getvalue(), "from a thread\n")


class TurnBufferedFileTests(TestCase):
    """What the SMTP workers write their log lines through."""

    def test_writes_go_through_until_attached(self):
        out = CountingFile()
        buffered = TurnBufferedFile(out)
        buffered.write("starting\n")
        self.assertEqual(out.getvalue(), "starting\n")

    def test_attached_it_drains_at_shutdown(self):
        out, clock = CountingFile(), ThreadClock()
        buffered = TurnBufferedFile(out)
        buffered.attach(clock)
        buffered.write("a\n")
        buffered.write("b\n")
        self.assertEqual(out.writes, 0)
        [(phase, event, drain)] = clock.triggers
        self.assertEqual((phase, event), ("after", "shutdown"))
        drain()
        self.assertEqual((out.getvalue(), out.writes), ("a\nb\n", 1))

    def test_worker_line_names_the_system(self):
        from indimail.smtp.worker import _line
        event = {"log_format": "hello {who}", "who": "world", "log_namespace": "smtpd"}
        self.assertEqual(_line(event), "[smtpd] hello world\n")


class PluginServicesTests(TestCase):
    """Each twistd plugin's service buffers the log while it runs."""

    def names(self, module, *args):
        from pathlib import Path
        home = Path(self.mktemp()).absolute()
        options = module.Options()
        options.parseOptions(["--home", str(home), *args])
        return [s.name for s in module.makeService(options)]

    async def test_all_send_and_smtpd(self):
        """(A coroutine so the reactor runs: the services ask for its thread
        pool, which otherwise waits for a startup that would come after the
        janitor stopped it.)"""
        from indimail import tap
        from indimail.send import tap as send_tap
        from indimail.smtp import tap as smtp_tap
        off = ["--smtp", "none", "--submission", "none", "--smtps", "none"]
        for names in (self.names(tap, *off, "--smtp-workers", "0"), self.names(send_tap)):
            self.assertIn("log-buffering", names)
            self.assertIn("gc-freeze", names)
        from indimail.config.init import init_home
        from pathlib import Path
        home = init_home(Path(self.mktemp()).absolute())
        options = smtp_tap.Options()
        options.parseOptions(["--home", str(home.path), *off])
        names = [s.name for s in smtp_tap.makeService(options)]
        self.assertIn("log-buffering", names)
        self.assertIn("gc-freeze", names)
