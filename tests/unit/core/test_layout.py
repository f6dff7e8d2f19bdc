from pathlib import Path
import random

from twisted.trial.unittest import SynchronousTestCase

from indimail.config.home import Home
from indimail.queue.layout import (DEFAULT_SPLIT, QueueDir, configured_queues,
                                   select_queue, split_from_env)


class LayoutTests(SynchronousTestCase):
    def test_split_path(self):
        """A message file lives at <dir>/<id % split>/<id> (the seed's 3016451 -> 75)."""
        q = QueueDir(Path("/q/queue1"))
        self.assertEqual(q.mess(3016451), Path("/q/queue1/mess/75/3016451"))
        self.assertEqual(q.todo(3016451), Path("/q/queue1/todo/75/3016451"))
        self.assertEqual(q.intd(3016451), Path("/q/queue1/intd/75/3016451"))

    def test_flat_dirs(self):
        """bounce/ and pid/ are not split."""
        q = QueueDir(Path("/q/queue1"))
        self.assertEqual(q.bounce(3016451), Path("/q/queue1/bounce/3016451"))
        self.assertEqual(q.trigger, Path("/q/queue1/lock/trigger"))

    def test_file_is_the_path_as_text(self):
        """The string form the blocking file work uses names the same file
        as the Path, split directories and flat ones, and survives pickling
        (the queue is handed to threads and helpers)."""
        import pickle
        q = QueueDir(Path("/var/indimail/queue/queue1"), 23)
        for kind in ("mess", "intd", "todo", "info", "local", "remote", "bounce", "trash"):
            self.assertEqual(q.file(kind, 4711), str(q.sub(kind, 4711)))
        self.assertEqual(q.file("info", 4711), "/var/indimail/queue/queue1/info/19/4711")
        again = pickle.loads(pickle.dumps(q))
        self.assertEqual((again, again.file("mess", 5)), (q, q.file("mess", 5)))

    def test_confsplit_may_only_lower(self):
        """CONFSPLIT lowers the split; larger or bad values keep 151."""
        self.assertEqual(split_from_env({"CONFSPLIT": "23"}), 23)
        self.assertEqual(split_from_env({"CONFSPLIT": "500"}), DEFAULT_SPLIT)
        self.assertEqual(split_from_env({"CONFSPLIT": "x"}), DEFAULT_SPLIT)
        self.assertEqual(split_from_env({}), DEFAULT_SPLIT)

    def test_queuedir_wins(self):
        """QUEUEDIR names the one queue; QUEUE_* are then ignored."""
        qs = configured_queues({"QUEUEDIR": "/x/queue7", "QUEUE_COUNT": "5"}, Path("/b"))
        self.assertEqual([q.path for q in qs], [Path("/x/queue7")])

    def test_queue_range(self):
        """QUEUE_BASE/queueN for N from QUEUE_START for QUEUE_COUNT queues."""
        qs = configured_queues({"QUEUE_BASE": "/v", "QUEUE_START": "3",
                                "QUEUE_COUNT": "2", "CONFSPLIT": "23"}, Path("/b"))
        self.assertEqual([q.path for q in qs], [Path("/v/queue3"), Path("/v/queue4")])
        self.assertEqual({q.split for q in qs}, {23})

    def test_default_base(self):
        """Without QUEUE_BASE the home's queue directory is used."""
        qs = configured_queues({}, Path("/h/queue"))
        self.assertEqual([q.path for q in qs], [Path("/h/queue/queue1")])

    def test_queue_list_follows_each_call_s_variables(self):
        """The queues are made once per set of variables, yet each call gets
        its own list, and changed variables (or base) give the new queues."""
        env = {"QUEUE_BASE": "/v", "QUEUE_COUNT": "2"}
        first = configured_queues(env, Path("/b"))
        first.append(QueueDir(Path("/elsewhere")))
        self.assertEqual([q.name for q in configured_queues(env, Path("/b"))],
                         ["queue1", "queue2"])
        env["QUEUE_COUNT"] = "3"
        self.assertEqual([q.name for q in configured_queues(env, Path("/b"))],
                         ["queue1", "queue2", "queue3"])
        self.assertEqual(configured_queues({}, Path("/other"))[0].path,
                         Path("/other/queue1"))
        self.assertEqual(configured_queues({"CONFSPLIT": "7"}, Path("/other"))[0].split, 7)

    def test_select_spreads_over_queues(self):
        """select_queue picks among all configured queues."""
        env = {"QUEUE_BASE": "/v", "QUEUE_COUNT": "3"}
        rng = random.Random(1)
        seen = {select_queue(env, Path("/b"), rng).name for _ in range(50)}
        self.assertEqual(seen, {"queue1", "queue2", "queue3"})


class HomeTests(SynchronousTestCase):
    def test_paths(self):
        """A home's directories sit under its path."""
        home = Home.from_env("/srv/im", env={})
        self.assertEqual(home.control, Path("/srv/im/control"))
        self.assertEqual(home.queue_base, Path("/srv/im/queue"))
        self.assertEqual(home.variables_for("smtpd"), Path("/srv/im/variables/smtpd"))

    def test_overrides(self):
        """CONTROLDIR and QUEUE_BASE override the home's defaults."""
        home = Home.from_env("/srv/im", env={"CONTROLDIR": "/etc/c", "QUEUE_BASE": "/var/q"})
        self.assertEqual(home.control, Path("/etc/c"))
        self.assertEqual(home.queue_base, Path("/var/q"))

    def test_default_from_env(self):
        """INDIMAIL_HOME is the default home."""
        self.assertEqual(Home.from_env(env={"INDIMAIL_HOME": "/x"}).path, Path("/x"))


class DynamicCountTests(SynchronousTestCase):

    def test_writers_follow_the_published_queue_count(self):
        """Under QUEUE_DYNAMIC new mail spreads over the queues the delivery
        side grew to (.queue_count), never fewer than QUEUE_COUNT."""
        import random
        from pathlib import Path
        from indimail.queue.layout import select_queue
        base = Path(self.mktemp())
        base.mkdir()
        env = {"QUEUE_BASE": str(base), "QUEUE_COUNT": "2", "QUEUE_DYNAMIC": "1"}
        rng = random.Random(7)
        names = {select_queue(env, base, rng).name for _ in range(200)}
        self.assertEqual(names, {"queue1", "queue2"})
        (base / ".queue_count").write_text("4\n")
        names = {select_queue(env, base, rng).name for _ in range(200)}
        self.assertEqual(names, {"queue1", "queue2", "queue3", "queue4"})
        without = {k: v for k, v in env.items() if k != "QUEUE_DYNAMIC"}
        names = {select_queue(without, base, rng).name for _ in range(200)}
        self.assertEqual(names, {"queue1", "queue2"})
