"""autoresponder: the rate-limited RFC 3834 responder of a ``.qmail`` line.

``| autoresponder [-cqlLN] [-n NUM] [-t TIME] [-T STR] [-s STR] [-S STR]
[-b SDATE] [-e EDATE] [-f ADDR] MSGFILE DIR``, run by qmail-local or
vdelivermail with the message on stdin and SENDER, DTLINE, RECIPIENT, HOST
in the environment (``vmoduser -l`` writes such a line).  The reply is queued
with a null envelope sender, as ``qmail-inject -a -f '' $SENDER`` does.
Exit 0 (replied, or the message needs no reply: it is delivered on), 111
on trouble.  The rules are in :mod:`indimail.vdomain.autoresponder`.
"""

from __future__ import annotations

import getopt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task, threads

from indimail.config.control import ControlFiles
from indimail.queue.bounce import BounceConfig
from indimail.queue.client import client_environment
from indimail.queue.inject import read_header
from indimail.vdomain import autoresponder as A
from indimail.vdomain.admin import _exit_status

PROG = "autoresponder"
FATAL = f"{PROG}: fatal: "
TEMPORARY = 111
USAGE = """ [OPTIONS] MSGFILE DIR

OPTIONS
 -c       Enclose original message as a MIME attachment in response
 -q       Don't show routine error messages
 -L       Don't try to make links to conserve inodes
 -N       Don't send, just send autoresponse to standard output
 -l       Lax Mode, allow even if RECIPIENT is not in to, cc and bcc
 -n NUM   Set the maximum number of replies to be sent in TIME secs (defaults to 1)
 -t TIME  Set the time interval, in seconds (defaults to 1 week, -1 for no rate limiting)
 -T STR   Added Content-Type field. This option is valid without
          the -c option. STR can be a path to a file having
          the content-type. A newline at the end will be removed
 -s STR   Prefix subject by STR (defaults to "Autoreply: Re:"
 -S STR   The subject in autoresponse (defaults to the subject in received mail)
 -b SDate Date (YYYY-mm-dd HH:MM:SS) from which the autoresponder should start functioning
 -e EDate Date (YYYY-mm-dd HH:MM:SS) after which the autoresponder should stop functioning
 -f addr  Set addr as the From field in autoresponse (defaults to recipient)

 MSGFILE is a file containing autoresponse text.
 Temporary files put into DIR track senders' rates.
 If more than NUM messages are received from the same sender
 within TIME seconds of each other, no response is sent.
 This program must be run by qmail"""
ENVIRONMENT = (("SENDER", "SENDER is not set, must be run from qmail."),
               ("DTLINE", "DTLINE is not set; must be run from qmail."),
               ("RECIPIENT", "RECIPIENT is not set; must be run from qmail."),
               ("HOST", "HOST is not set; must be run from qmail."))
UNSET_FOR_INJECT = ("QMAILNAME", "QMAILUSER", "QMAILHOST")


class Usage(Exception):
    """A bad command line or environment: the usage text, exit 111."""


class Fatal(Exception):
    """Trouble reading, writing or queueing: exit 111."""


_FLAGS = {"-c": "copy", "-q": "quiet", "-l": "lax", "-L": "no_links", "-N": "no_send"}
_VALUES = {"-s": "subject_prefix", "-S": "subject", "-f": "from_addr"}


def parse_options(argv: list[str]) -> A.Options:
    try:
        opts, args = getopt.getopt(argv, "cn:s:S:t:T:f:b:e:qlLN")
    except getopt.GetoptError as exc:
        raise Usage(str(exc)) from None
    o = A.Options()
    for key, value in opts:
        if key in ("-b", "-e"):
            try:
                when = A.parse_date(value)
            except ValueError:
                raise Usage(f"Invalid date [{value}] in {'SDATE' if key == '-b' else 'EDATE'}"
                            ) from None
            if key == "-b":
                o.start = when
            else:
                o.end = when
        elif key in ("-n", "-t"):
            try:
                number = int(value)
            except ValueError:
                raise Usage(f"Invalid number [{value}] in {'NUM' if key == '-n' else 'TIME'}"
                            ) from None
            if key == "-n":
                o.max_replies = max(number, 1)
            else:
                o.interval = number
        elif key == "-T":
            o.content_type = _content_type(value)
        elif key in _FLAGS:
            setattr(o, _FLAGS[key], True)
        else:
            setattr(o, _VALUES[key], value)
    if len(args) < 2:
        raise Usage("Too few command-line arguments")
    if len(args) > 2:
        raise Usage("Too many command-line arguments")
    o.message_file, o.directory = args
    return o


def _content_type(value: str) -> str:
    """``-T``: the field itself, or (a value with ``/`` in it naming a
    file) the file's text less one trailing newline, as upstream."""
    if "/" not in value:
        return value
    try:
        text = Path(value).read_text(errors="replace")
    except OSError as exc:
        raise Fatal(f"{value}: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text


class Responder:
    """One run: the checks, the record and the reply (blocking parts run
    in a thread)."""

    def __init__(self, options: A.Options, env, home, stdin, stdout):
        self.options = options
        self.env = env
        self.home = home
        self.stdin = stdin
        self.stdout = stdout
        self.control = ControlFiles(home.control)
        self.now = time.time()

    def prepare(self) -> None:
        """The arguments' files, the environment, and the sender's checks."""
        if not os.access(self.options.message_file, os.R_OK) or \
                os.path.isdir(self.options.message_file):
            raise Usage("Could not open message file.")
        if not os.path.isdir(self.options.directory):
            raise Usage("Could not change directory to DIRECTORY")
        for name, text in ENVIRONMENT:
            if name not in self.env:
                raise Usage(text)
        host = self.env["HOST"]
        self.sender = self.env["SENDER"]
        self.recipient = A.recipient_address(self.env["RECIPIENT"], host)
        self.lax = self.options.lax or A.lax_for_dtline(self.recipient, self.env["DTLINE"],
                                                         host)
        A.check_sender(self.sender)
        self.bounce = BounceConfig.from_control(self.control)

    async def badrcptto(self, reactor) -> None:
        """Senders in badrcptto/badrcptpatterns get no reply."""
        from indimail.policy.lists import AddressList, ListError
        family = AddressList(self.control, "badrcptto", None, "badrcptpatterns", None,
                             reactor=reactor)
        try:
            listed = await family.match(self.sender, self.env)
        except ListError as exc:
            raise Fatal(f"unable to read badrcptto: {exc}") from None
        if listed:
            raise A.Ignore("SENDER is blacklisted")

    def answer(self) -> int:
        """Read the header, apply the message checks, record, reply."""
        message = self._seekable(self.stdin)
        header, _first, _ended = read_header(message)
        original = A.read_original(header, self.env["DTLINE"])
        A.check_message(original, self.recipient, self.lax)
        if self.options.no_send:
            self._compose(original, message, self.stdout)
            self.stdout.flush()
            return 0
        directory = Path(self.options.directory)
        record = A.count_history(directory, self.sender.lower(), self.now, self.options)
        if record is None:
            raise A.Ignore("SENDER has sent too many messages")
        try:
            with tempfile.TemporaryFile() as reply:
                self._compose(original, message, reply)
                reply.seek(0)
                status = self._inject(reply)
        except BaseException:
            _unlink(directory / record)
            raise
        if status:
            _unlink(directory / record)     # the retry may answer after all
            raise Fatal("qmail-inject failed")
        return 0

    def _seekable(self, stream):
        """The message, rewindable (MAKE_SEEKABLE): a pipe is spooled first."""
        try:
            stream.seek(0)
            return stream
        except (OSError, ValueError):
            spool = tempfile.TemporaryFile()
            shutil.copyfileobj(stream, spool)
            spool.seek(0)
            return spool

    def _compose(self, original: A.Original, message, out) -> None:
        boundary = None
        if self.options.copy:
            boundary = (f"{int(self.now)}.qp_{os.getpid()}.KUI@"
                        f"{self.bounce.bouncehost}")
        sender_line = A.from_line(self.options, self.recipient, self.env,
                                  self.bounce.bouncefrom, self.bounce.bouncehost)
        out.write(A.reply_header(original, self.options, sender=self.sender,
                                 from_line=sender_line, now=self.now,
                                 boundary=boundary).encode("utf-8", "surrogateescape"))
        parts = A.mime_parts(boundary) if boundary else None
        if parts:
            out.write(parts[0])
        try:
            text = Path(self.options.message_file).read_bytes()
        except OSError as exc:
            raise Fatal(f"unable to read autoresponse text: {exc.strerror}") from None
        out.write(A.substitute(text.decode("utf-8", "surrogateescape"), original,
                               self.recipient, self.now).encode("utf-8", "surrogateescape"))
        if parts:
            out.write(parts[1])
            message.seek(0)
            shutil.copyfileobj(message, out)
            out.write(parts[2])

    def _inject(self, reply) -> int:
        from indimail.cli.qmail_inject import inject
        env = {k: v for k, v in self.env.items() if k not in UNSET_FOR_INJECT}
        return inject(self.home, env, reply, [self.sender], mode="a", sender="",
                      prog=PROG)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def respond(reactor, options: A.Options, env, home, stdin, stdout, stderr) -> int:
    """The whole run; the exit status."""
    def thread(fn, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
    try:
        A.check_period(options, time.time())
        responder = Responder(options, env, home, stdin, stdout)
        await thread(responder.prepare)
        await responder.badrcptto(reactor)
        return await thread(responder.answer)
    except A.Ignore as why:
        if not options.quiet:
            stderr.write(f"{PROG}: Ignoring message, {why}\n")
        return 0
    except Usage as exc:
        stderr.write(f"{PROG}: {exc}\nUSAGE: {PROG}{USAGE}\n")
        return TEMPORARY
    except Fatal as exc:
        stderr.write(f"{FATAL}{exc}\n")
        return TEMPORARY
    except OSError as exc:
        stderr.write(f"{FATAL}{exc.filename or ''}: {exc.strerror}\n")
        return TEMPORARY


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse_options(argv)
    except Usage as exc:
        sys.stderr.write(f"{PROG}: {exc}\nUSAGE: {PROG}{USAGE}\n")
        sys.exit(TEMPORARY)
    except Fatal as exc:
        sys.stderr.write(f"{FATAL}{exc}\n")
        sys.exit(TEMPORARY)
    try:
        home, env = client_environment()
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{FATAL}unable to read configuration: {exc}\n")
        sys.exit(TEMPORARY)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(respond(
        reactor, options, env, home, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    ).addCallback(_exit_status))


if __name__ == "__main__":
    main()
