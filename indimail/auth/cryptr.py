"""crypt(3) that lets other threads run while it hashes.

CPython's ``crypt`` module keeps the GIL for the whole ``crypt_r`` call, so
a SHA512-crypt hash (5,000 rounds and more) in a worker thread still stops
the reactor thread.  ctypes releases the GIL around foreign calls: libcrypt's
``crypt_r`` called through it hashes while the reactor goes on.  Where
libcrypt has no ``crypt_r`` the ``crypt`` module is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings

DATA_SIZE = 1 << 16   # at least sizeof(struct crypt_data): 32768 in libxcrypt


def _load():
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        function = ctypes.CDLL(name).crypt_r
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_char_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    return function


_crypt_r = _load()


def crypt(password: bytes, salt: str) -> str | None:
    """crypt(3) of *password* with *salt*; None when it cannot hash (an
    unsupported salt, a NUL in the password)."""
    if b"\0" in password:
        return None
    if _crypt_r is None:
        return _module_crypt(password, salt)
    data = ctypes.create_string_buffer(DATA_SIZE)   # zeroed, as crypt_r wants
    result = _crypt_r(password, salt.encode("ascii", "replace"), data)
    return result.decode("ascii", "replace") if result else None


def _module_crypt(password: bytes, salt: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt
        return _crypt.crypt(password.decode("utf-8", "surrogateescape"), salt)


def releases_gil() -> bool:
    """Whether hashing runs without the GIL (libcrypt's crypt_r was found)."""
    return _crypt_r is not None
