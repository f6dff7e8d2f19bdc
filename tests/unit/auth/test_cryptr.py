"""crypt(3) through libcrypt's crypt_r: same hashes as the crypt module, and
other threads keep running while it hashes (the reactor is not stopped)."""

from __future__ import annotations

import threading
import time
import warnings

from twisted.trial.unittest import SynchronousTestCase

from indimail.auth import cryptr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt as stdlib_crypt


class CryptTests(SynchronousTestCase):

    def test_same_hashes_as_the_crypt_module(self):
        """SHA512, SHA256 and MD5 crypt give the crypt module's results."""
        for salt in ("$6$saltsalt$", "$5$rounds=6000$abcdefgh$", "$1$abcdefgh$"):
            self.assertEqual(cryptr.crypt(b"s3cret pass", salt),
                             stdlib_crypt.crypt("s3cret pass", salt))

    def test_nul_cannot_be_hashed(self):
        """A password with a NUL byte has no crypt(3) hash (never matches)."""
        self.assertIsNone(cryptr.crypt(b"a\0b", "$6$saltsalt$"))

    def test_other_threads_run_while_hashing(self):
        """During a long SHA512-crypt in one thread the main thread is never
        held up for more than a fraction of the hash (the crypt module keeps
        the GIL for the whole call and holds it up for almost all of it)."""
        self.assertTrue(cryptr.releases_gil())
        state = {}

        def hash_it():
            state["start"] = time.perf_counter()
            cryptr.crypt(b"password", "$6$rounds=400000$saltsalt$")
            state["end"] = time.perf_counter()
        worker = threading.Thread(target=hash_it)
        worker.start()
        while "start" not in state:
            time.sleep(0.001)
        longest, last = 0.0, time.perf_counter()
        while worker.is_alive():
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        worker.join()
        took = state["end"] - state["start"]
        self.assertLess(longest, 0.4 * took, (longest, took))
