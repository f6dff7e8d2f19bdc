"""Wait until an SMTP server answers with its 220 greeting."""

from __future__ import annotations

import socket
import time
from typing import Callable


def read_banner(host: str, port: int, timeout: float = 5.0) -> bytes:
    """Connect, read the greeting, say QUIT; return the greeting line."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        try:
            sock.sendall(b"QUIT\r\n")
            sock.recv(512)
        except OSError:
            pass
    return data


def wait_for_banner(host: str, port: int, timeout: float,
                    alive: Callable[[], bool] = lambda: True,
                    interval: float = 0.1) -> bytes:
    """Poll until a ``220`` greeting arrives; fail fast if the server died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server process exited")
        try:
            banner = read_banner(host, port)
            if banner.startswith(b"220"):
                return banner
            last = RuntimeError(f"unexpected greeting {banner!r}")
        except OSError as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"no 220 greeting on {host}:{port} within {timeout}s ({last})")


def free_port(host: str = "127.0.0.1") -> int:
    """An unprivileged port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
