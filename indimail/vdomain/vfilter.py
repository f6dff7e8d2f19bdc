"""vfilter: IndiMail's rule-based filter over the ``vfilter`` table.

A rule (``vcfilter -i``) names a header by number (``headerlist``), a
comparison, a keyword, a destination folder and a bounce action.  At delivery
the rules of ``prefilt@<domain>`` run first (unless ``Maildir/noprefilt``
exists), then the user's own (only when ``Maildir/vfilter`` exists, which
``vcfilter -i`` creates), then ``postfilt@<domain>`` (unless
``Maildir/nopostfilt``); the first matching rule decides.  Comparison 5
(sender not in the address book) reads the user's ``Maildir/addressbook``.
This module is the pure part: header extraction, matching and the texts;
the delivery engine acts on the :class:`Verdict`.
"""

from __future__ import annotations

import ast
import email.parser
import email.policy
import fnmatch
import operator
import re
from dataclasses import dataclass
from pathlib import Path

from .records import VFilter

HEADERS = (
    "Return-Path", "From", "Subject", "To", "Cc", "Bcc", "Reply-To", "Date", "Sender",
    "User-Agent", "Message-Id", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "Precedence", "Organization", "Errors-To", "List-Id", "Importance", "Mailing-List",
    "X-Sender", "X-Mailing-List", "X-ML-Name", "X-List", "X-Loop", "X-BeenThere",
    "X-Sequence", "X-Mailer", "X-QHPSI", "X-Priority", "X-Mailer", "X-Spam-Status",
    "X-Spam-Rating", "X-Bogosity", "Received", "X-Quarantine", "Domainkey-Signature",
    "DKIM-Signature", "DKIM-Status", "Domainkey-Status", "X-Forwarded-To",
    "X-Forwarded-For", "Return-Receipt-To", "Dispostion-Notification-To",
    "Disposition-Notification-Options", "Original-Recipient")

COMPARISONS = ("Equals", "Contains", "Does not contain", "Starts with", "Ends with",
               "Sender Not in Address Book", "My id not in To, CC, Bcc",
               "Numerical Logical Expression", "RegExp")

NO_DELIVER = "/NoDeliver"
INBOX = "Inbox"
# addresses vcfilter refuses to filter (upstream rfc_ids)
RFC_IDS = ("postmaster", "abuse", "mailer-daemon", "prefilt", "postfilt", "spam",
           "nonspam", "register-spam", "register-nonspam")


def header_list(path: Path | None = None) -> tuple[str, ...]:
    """The header names, numbered from 0: ``headerlist`` (one per line, ``#``
    comments) when it exists, else IndiMail's built-in list."""
    if path is None:
        return HEADERS
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return HEADERS
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return tuple(n for n in names if n) or HEADERS


def split_bounce(bounce_action: str) -> tuple[int, str]:
    """(action, forward) of a stored bounce_action: ``0``, ``1``, or
    ``2``/``3`` followed by ``&address`` or ``|program``."""
    text = (bounce_action or "0").strip()
    try:
        action = int(text[:1])
    except ValueError:
        return 0, ""
    return action, text[1:] if action in (2, 3) else ""


def message_headers(path: Path) -> list[tuple[str, str]]:
    """(name, value) of every header of the message and of its MIME parts,
    values unfolded and lower-cased, as vfilter's eps parser gives them
    (blocking: reads the file)."""
    with open(path, "rb") as f:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parse(f)
    found: list[tuple[str, str]] = []
    for part in msg.walk():
        for name, value in part.items():
            text = str(value) if not isinstance(value, str) else value
            text = re.sub(r"\r?\n[ \t]+", " ", text).strip()
            found.append((name, text.lower()))
    return found


# -- comparison 7: a small arithmetic/logic evaluator ----------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Mod: operator.mod}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
           ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else \
            (int(not value) if isinstance(node.op, ast.Not) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.BoolOp):
        values = [_eval(v) for v in node.values]
        return int(all(values) if isinstance(node.op, ast.And) else any(values))
    if isinstance(node, ast.Compare):
        left = _eval(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node)
            if type(op) not in _CMPOPS or not _CMPOPS[type(op)](left, right):
                return 0
            left = right
        return 1
    raise ValueError("not an expression")


def numerical_compare(data: str, expression: str) -> bool:
    """Comparison 7: *expression* with ``%p`` replaced by the header value
    (``%p < 0.4``); true when it evaluates to a non-zero integer.  ``&&``,
    ``||`` and ``!`` work as in C.  A float result, or an expression that
    does not evaluate, is no match (as upstream's evaluate())."""
    number = re.match(r"\s*([-+]?\d+(?:\.\d*)?)", data)
    text = expression.replace("%p", number.group(1) if number else "0")
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    try:
        result = _eval(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
        return False
    return type(result) is int and result != 0


# -- matching ------------------------------------------------------------------

_ADDRESS = re.compile(r"[^\s<>,;:\"()]+@[^\s<>,;:\"()]+")
SENDER_HEADERS = ("from", "return-path")      # comparison 5
RECIPIENT_HEADERS = ("to", "cc", "bcc")       # comparison 6
ADDRESS_BOOK = "addressbook"


def _addresses(value: str) -> list[str]:
    return [a.strip(".").lower() for a in _ADDRESS.findall(value)]


def is_global(filterid: str) -> bool:
    """``prefilt@domain``/``postfilt@domain``: the domain's rules."""
    return filterid.lower().startswith(("prefilt@", "postfilt@"))


def read_address_book(maildir: Path) -> frozenset[str]:
    """The user's address book for comparison 5: every address written in
    ``Maildir/addressbook`` (one contact a line, ``#`` comments; a bare
    address, ``Name <address>`` or a vCard ``EMAIL:`` line all count).
    Upstream's getAddressBook() is a stub that knows no one; without the
    file that is what we know too (blocking: reads the file)."""
    try:
        text = (maildir / ADDRESS_BOOK).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    found: set[str] = set()
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            found.update(_addresses(line))
    return frozenset(found)


def header_domains(headers: list[tuple[str, str]], wanted=RECIPIENT_HEADERS) -> set[str]:
    """The domains of the addresses in the *wanted* headers (comparisons 5
    and 6 map alias domains to their real domain)."""
    return {a.rpartition("@")[2] for name, value in headers
            if name.lower() in wanted for a in _addresses(value)}


def _address_compare(rule: VFilter, headers, emailid: str, real_domain,
                     address_book) -> bool:
    """Comparisons 5 and 6 (upstream process_filter): 5 matches unless a
    From/Return-Path address is the user's own or in the address book; 6
    matches unless a To/Cc/Bcc address is the user's (alias domains mapped
    by *real_domain*).  The domain's global rules never match with them."""
    if is_global(rule.emailid or emailid):
        return False
    sender = rule.comparision == 5
    wanted = SENDER_HEADERS if sender else RECIPIENT_HEADERS
    for name, value in headers:
        if name.lower() not in wanted:
            continue
        for address in _addresses(value):
            user, _, domain = address.rpartition("@")
            if address == emailid or f"{user}@{real_domain(domain)}" == emailid:
                return False
            if sender and address in address_book:
                return False
    return True


def rule_matches(rule: VFilter, headers: list[tuple[str, str]], names: tuple[str, ...],
                 emailid: str, real_domain=lambda d: d, address_book=frozenset()) -> bool:
    """Whether *rule* matches a message with *headers* (lower-cased values)
    for the user *emailid*.  Comparisons as upstream vfilter.c:

    0 Equals: the value begins with the keyword (QUIRK: upstream compares
    only the keyword's length, so Equals acts as a case-blind prefix test);
    1 Contains; 2 Does not contain (the header is present and no copy holds
    the keyword); 3 Starts with; 4 Ends with; 5 Sender not in the
    *address_book* (nor the user); 6 the user's address (alias domains
    mapped by *real_domain*) is in no To/Cc/Bcc; 7 numerical expression;
    8 shell pattern (fnmatch, case-blind)."""
    comparison = rule.comparision
    if comparison in (5, 6):
        return _address_compare(rule, headers, emailid.lower(), real_domain, address_book)
    if not 0 <= rule.header_name < len(names):
        return False
    header = names[rule.header_name].lower()
    keyword = rule.keyword.lower()
    values = [v for n, v in headers if n.lower() == header]
    if not values:
        return False
    if comparison == 0:
        return any(v[:len(keyword)] == keyword for v in values)
    if comparison == 1:
        return any(keyword in v for v in values)
    if comparison == 2:
        return not any(keyword in v for v in values)
    if comparison == 3:
        return any(v.startswith(keyword) for v in values)
    if comparison == 4:
        return any(v.endswith(keyword) for v in values)
    if comparison == 7:
        return any(numerical_compare(v, keyword) for v in values)
    if comparison == 8:
        return any(fnmatch.fnmatchcase(v, keyword) for v in values)
    return False


async def address_context(rules: list[VFilter], headers, maildir: Path, thread,
                          real_domain) -> tuple:
    """What comparisons 5 and 6 of *rules* need: ``(real_domain, address
    book)``, the first a plain function over the To/Cc/Bcc domains resolved
    with the store's *real_domain* coroutine (an unknown domain stays
    itself, as upstream), the second read through *thread*.  Nothing is
    looked up when no user rule uses them."""
    used = {r.comparision for r in rules if not is_global(r.emailid)}
    book: frozenset[str] = frozenset()
    mapped: dict[str, str] = {}
    wanted: set[str] = set()
    if 5 in used:
        book = await thread(read_address_book, maildir)
        wanted.update(SENDER_HEADERS)
    if 6 in used:
        wanted.update(RECIPIENT_HEADERS)
    for domain in header_domains(headers, wanted):
        mapped[domain] = await real_domain(domain) or domain
    return (lambda d: mapped.get(d, d)), book


@dataclass(frozen=True)
class Verdict:
    """What a matching rule asks for."""

    rule: VFilter
    folder: str           # "" or Inbox: the inbox; /NoDeliver: nowhere
    action: int           # 0 keep, 1 bounce, 2 forward/program, 3 both
    forward: str          # "&address" or "|program" for actions 2 and 3

    @property
    def deliver(self) -> bool:
        return bool(self.folder) and self.folder.lower() != NO_DELIVER.lower()

    @property
    def maildir_folder(self) -> str | None:
        """The MAILDIRFOLDER for the delivery (None: the inbox)."""
        if not self.deliver or self.folder.lower() == INBOX.lower():
            return None
        return self.folder

    @property
    def bounce(self) -> bool:
        return self.action in (1, 3)


def first_match(rules: list[VFilter], headers, names, emailid: str,
                real_domain=lambda d: d, address_book=frozenset()) -> Verdict | None:
    """The verdict of the first rule (in filter_no order) that matches."""
    for rule in rules:
        if rule_matches(rule, headers, names, emailid, real_domain, address_book):
            action, forward = split_bounce(rule.bounce_action)
            return Verdict(rule, rule.destination, action, forward)
    return None


def bounce_text(host: str) -> str:
    """printBounce(): the text a bouncing filter gives the sender."""
    return (f"Hi. This is the IndiMail MDA for {host}\n"
            "I'm afraid I cannot accept your message as a configured filter has decided\n"
            "to reject this mail\n"
            "Please refrain from sending such mail in future")


# -- vcfilter -s ---------------------------------------------------------------

DISPLAY_HEAD = ("No  EmailId                       FilterName Header          Comparision"
                "                Keyword         Folder          Bounce Delivery\n"
                + "-" * 146 + "\n")
DISPLAY_RULE = "-" * 146 + "\n"


def format_rule(rule: VFilter, names: tuple[str, ...]) -> str:
    """One line of ``vcfilter -s`` (upstream format_filter_display)."""
    action, forward = split_bounce(rule.bounce_action)
    header = "N/A" if rule.header_name < 0 else \
        (names[rule.header_name] if rule.header_name < len(names) else "invalid header")
    comparison = COMPARISONS[rule.comparision] if 0 <= rule.comparision < len(COMPARISONS) \
        else "?"
    folder = "Void" if rule.destination == NO_DELIVER else rule.destination.lstrip("/")
    line = (f"{rule.filter_no:>3} {rule.emailid:<29} {rule.filter_name:<20} {header:<15} "
            f"{comparison:<26} {rule.keyword or 'N/A':<15} {folder:<15} "
            f"{'Yes' if action in (1, 3) else 'No'}")
    if action > 1:
        line += forward
    return line + "\n"


def format_rule_raw(rule: VFilter) -> str:
    """One line of ``vcfilter -s -r``: fields separated by blanks, blanks in
    names as ``~``."""
    action, forward = split_bounce(rule.bounce_action)
    if action:
        what = forward if action == 2 else "Bounce"
    else:
        what = "Vapour" if rule.destination == NO_DELIVER else "Deliver"
    name = re.sub(r"\s", "~", rule.filter_name)
    keyword = re.sub(r"\s", "~", rule.keyword) or "N/A"
    return (f"{rule.filter_no} {rule.emailid} {name} {rule.header_name} {rule.comparision} "
            f"{keyword} {rule.destination} {what}\n")
