"""Why a message could not be queued, as qmail-queue's exit code.

The code is the contract between a queue client and the queue (reference
§1, ``qmail.c``): 11–40 are permanent, everything else temporary.  The
texts are upstream's ``qmail_close()`` strings so SMTP clients see the
replies they always saw.
"""

from __future__ import annotations

import re

# exit code -> upstream text (without the leading D/Z of qmail_close()).
_TEXTS = {
    11: "envelope address too long for qq (#5.1.3)",
    31: "mail server permanently rejected message (#5.3.0)",
    32: "spam or junk mail threshold exceeded (#5.7.1)",
    33: "message contains virus (#5.7.1)",
    34: "message contains banned attachment (#5.7.1)",
    35: "private key file does not exist (#5.3.5)",
    51: "qq out of memory (#4.3.0)",
    52: "qq timeout (#4.3.0)",
    53: "qq write error or disk full (#4.3.0)",
    54: "qq read error (#4.3.0)",
    55: "qq unable to read configuration (#4.3.0)",
    56: "qq trouble making network connection (#4.3.0)",
    60: "qq trouble creating pipes/sockets (#4.3.0)",
    61: "qq trouble in home directory (#4.3.0)",
    62: "qq trouble creating files in queue (#4.3.0)",
    63: "qq trouble creating files in queue (#4.3.0)",
    64: "qq trouble creating files in queue (#4.3.0)",
    65: "qq trouble creating files in queue (#4.3.0)",
    66: "qq trouble creating files in queue (#4.3.0)",
    67: "qq trouble getting uids/gids (#4.3.0)",
    68: "qq trouble creating temporary files (#4.3.0)",
    71: "mail server temporarily rejected message (#4.3.0)",
    72: "connection to mail server timed out (#4.4.1)",
    73: "connection to mail server rejected (#4.4.1)",
    74: "communication with mail server failed (#4.4.2)",
    75: "qq unable to exec (#4.3.0)",
    76: "qq temporary problem with SPAM filter (#4.3.0)",
    77: "qq unable to run QHPSI scanner (#4.3.0)",
    79: "qq envelope format error (#4.3.0)",
    81: "qq internal bug (#4.3.0)",
    87: "qq mail system incorrectly configured. (#4.3.5)",
    91: "qq internal bug (#4.3.0)",
}

# Names for the codes this package raises itself.
TOO_LONG = 11
OUT_OF_MEMORY = 51
TIMEOUT = 52
WRITE_ERROR = 53
READ_ERROR = 54
CONFIG_ERROR = 55
MESS_FILE = 62
PID_FILE = 63
LINK_MESS = 64
INTD_FILE = 65
LINK_TODO = 66
ENVELOPE_FORMAT = 79
INTERNAL_BUG = 81

_ENHANCED = re.compile(r"\s*\(#(\d\.\d{1,3}\.\d{1,3})\)\s*$")


def is_permanent(code: int) -> bool:
    """qmail's rule: exit codes 11 to 40 are permanent failures."""
    return 11 <= code <= 40


def default_text(code: int) -> str:
    """Upstream's text for *code*, with its ``(#x.y.z)`` trailer."""
    if code in _TEXTS:
        return _TEXTS[code]
    if is_permanent(code):
        return "qq permanent problem (#5.3.0)"
    return "qq temporary problem (#4.3.0)"


class QueueError(Exception):
    """Queueing failed with qmail-queue exit *code*; *text* is the reply text.

    *text* may carry qmail's ``(#x.y.z)`` trailer; when omitted the upstream
    text for the code is used.
    """

    def __init__(self, code: int, text: str | None = None):
        self.code = int(code)
        self.text = text if text else default_text(self.code)
        super().__init__(self.code, self.text)

    def __str__(self) -> str:
        return f"qmail-queue exit {self.code}: {self.text}"

    @property
    def temporary(self) -> bool:
        return not is_permanent(self.code)

    @property
    def qmail_text(self) -> str:
        """The text as ``qmail_close()`` returns it: ``Z...`` or ``D...``."""
        return ("Z" if self.temporary else "D") + self.text

    @property
    def smtp_reply(self) -> tuple[int, str, str]:
        """``(code, enhanced, text)``: 451/4.x.x when temporary, 554/5.x.x
        when permanent; the enhanced code comes from the ``(#x.y.z)``
        trailer, which is left in *text* as qmail-smtpd prints it."""
        match = _ENHANCED.search(self.text)
        if self.temporary:
            enhanced = match.group(1) if match and match.group(1)[0] == "4" else "4.3.0"
            return 451, enhanced, self.text
        enhanced = match.group(1) if match and match.group(1)[0] == "5" else "5.3.0"
        return 554, enhanced, self.text
