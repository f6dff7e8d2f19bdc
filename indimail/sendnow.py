"""Send a small write at once when nothing is queued before it.

Twisted queues every ``transport.write`` and asks epoll to report the socket
writable, so each write costs two ``epoll_ctl`` calls and one more reactor
turn before its ``send``.  An SMTP reply or a database query nearly always
fits the socket buffer; on a plain TCP or UNIX connection (either end) with
an empty write buffer it is sent straight away, and whatever the kernel does
not take goes through the transport as before, in order.  TLS connections
always use the transport.
"""

from __future__ import annotations

from twisted.internet import tcp, unix

_PLAIN = (tcp.Server, tcp.Client, unix.Server, unix.Client)


def send_now(transport, data: bytes) -> None:
    """Write *data* to *transport*, sending it directly when that is safe."""
    if (type(transport) in _PLAIN and not getattr(transport, "TLS", False)
            and transport.connected and not transport.disconnecting
            and not transport._writeDisconnected
            and not transport.dataBuffer and not transport._tempDataLen):
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0   # the transport meets the same error and reports it
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
