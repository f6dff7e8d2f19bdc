"""RCPT sessions driven over plain sockets from one epoll loop.

The load generator shares the machine's two cores with the service and the
database, so its own CPU per RCPT is taken from the service under test, and
under a closed loop the p99 follows the sum.  An asyncio stream client spends
about 55 us of Python per RCPT (a task step, a StreamReader, a future per
reply); this loop reads, times and answers each session's reply in a few
microseconds, and times every reply the moment its bytes are read rather
than after the event loop has stepped the other sessions' tasks.

Each session is a list of commands planned up front (MAIL, the RCPTs, RSET
per transaction): only RCPTs are timed, and only their replies may be
refusals (kept, not fatal); any other command must get its expected code.
With *interval* each session sends one RCPT every *interval* seconds from
its own *offset*, on a schedule that does not slip.
"""

from __future__ import annotations

import heapq
import select
import socket
import time
from dataclasses import dataclass, field

REPLY_TIMEOUT = 30.0


class ReplyError(Exception):
    """The server answered something the benchmark did not expect."""


def take_reply(buffer: bytearray) -> tuple[int, bytes] | None:
    """Remove the first complete (possibly multi-line) reply from *buffer*:
    its code and full text, or None while it is incomplete."""
    start = 0
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            return None
        if buffer[start + 3:start + 4] != b"-":
            text = bytes(buffer[:end + 1])
            del buffer[:end + 1]
            try:
                return int(text[start:start + 3]), text
            except ValueError:
                raise ReplyError(f"not an SMTP reply: {text!r}") from None
        start = end + 1


@dataclass(frozen=True)
class Command:
    line: bytes
    expect: int | None     # the code it must get; None: any (a timed RCPT)
    timed: bool = False


def plan(recipients: list[str], per_mail: int, sender: str) -> list[Command]:
    """One session's commands: per *per_mail* recipients a MAIL, the RCPTs, a RSET."""
    out = []
    for i in range(0, len(recipients), per_mail):
        out.append(Command(f"MAIL FROM:<{sender}>\r\n".encode(), 250))
        out += [Command(f"RCPT TO:<{a}>\r\n".encode(), None, True)
                for a in recipients[i:i + per_mail]]
        out.append(Command(b"RSET\r\n", 250))
    return out


@dataclass
class Session:
    sock: socket.socket
    commands: list[Command]
    next: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    sent_at: float = 0.0
    due: float = 0.0

    def __lt__(self, other: "Session") -> bool:   # for the pacing heap
        return self.due < other.due


def _reply_blocking(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    while True:
        reply = take_reply(buffer)
        if reply is not None:
            return reply
        data = sock.recv(65536)
        if not data:
            raise ReplyError(f"connection closed after {bytes(buffer)!r}")
        buffer += data


def open_session(port: int, commands: list[Command], helo: str = "bench.client") -> Session:
    """A blocking connection past the greeting and EHLO."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    session = Session(sock, commands)
    code, text = _reply_blocking(sock, session.buffer)
    if code != 220:
        raise ReplyError(f"greeting {text!r}")
    sock.sendall(f"EHLO {helo}\r\n".encode())
    code, text = _reply_blocking(sock, session.buffer)
    if code != 250:
        raise ReplyError(f"EHLO: expected 250, got {text!r}")
    return session


def close_session(session: Session) -> None:
    """QUIT (its reply read when it comes quickly) and close."""
    try:
        session.sock.setblocking(True)
        session.sock.settimeout(2.0)
        session.sock.sendall(b"QUIT\r\n")
        _reply_blocking(session.sock, session.buffer)
    except (OSError, ReplyError):
        pass
    session.sock.close()


def drive(port: int, per_session: list[list[Command]], interval: float = 0.0
          ) -> tuple[list[float], list[bytes], float]:
    """Run every session's commands at once: (RCPT latencies in seconds,
    the refusals' texts, wall seconds from the first send to the last reply)."""
    sessions = [open_session(port, commands) for commands in per_session]
    try:
        return _run(sessions, interval)
    finally:
        for s in sessions:
            close_session(s)


def _run(sessions: list[Session], interval: float) -> tuple[list[float], list[bytes], float]:
    latencies: list[float] = []
    refused: list[bytes] = []
    by_fd = {}
    poller = select.epoll()
    clock = time.perf_counter
    waiting: list[Session] = []          # paced sessions, by when their RCPT is due
    began = clock()
    for i, s in enumerate(sessions):
        s.sock.setblocking(False)
        by_fd[s.sock.fileno()] = s
        poller.register(s.sock.fileno(), select.EPOLLIN)
        s.due = began + interval * i / len(sessions)
    live = len([s for s in sessions if s.commands])

    def advance(s: Session, now: float) -> None:
        """Send *s*'s next command, or park it until its RCPT is due."""
        command = s.commands[s.next]
        if interval > 0 and command.timed:
            if s.due > now:
                heapq.heappush(waiting, s)
                return
            s.due += interval
        s.sent_at = clock()
        s.sock.send(command.line)

    for s in sessions:
        if s.commands:
            advance(s, began)
    finished = began
    try:
        while live:
            timeout = REPLY_TIMEOUT
            if waiting:
                timeout = max(0.0, waiting[0].due - clock())
            events = poller.poll(timeout)
            now = clock()
            while waiting and waiting[0].due <= now:
                advance(heapq.heappop(waiting), now)
            if not events and not waiting and timeout == REPLY_TIMEOUT:
                raise ReplyError(f"no reply in {REPLY_TIMEOUT:g} s")
            for fd, _ in events:
                s = by_fd[fd]
                data = s.sock.recv(65536)
                now = clock()
                if not data:
                    raise ReplyError(f"connection closed after {bytes(s.buffer)!r}")
                s.buffer += data
                reply = take_reply(s.buffer)
                if reply is None:
                    continue
                code, text = reply
                command = s.commands[s.next]
                if command.timed:
                    latencies.append(now - s.sent_at)
                    if code != 250:
                        refused.append(text)
                elif code != command.expect:
                    raise ReplyError(f"{command.line.strip()!r}: expected {command.expect}, "
                                     f"got {text!r}")
                s.next += 1
                if s.next < len(s.commands):
                    advance(s, now)
                else:
                    live -= 1
                    finished = now
    finally:
        poller.close()
    return latencies, refused, finished - began
