"""wildmat: the classic INN shell-style matcher that qmail's control files use.

``*`` matches any run of characters, ``?`` any one character, ``[...]`` a
class (``a-z`` ranges, ``]`` or ``-`` first is literal), ``[^...]`` a
negated class and ``\\`` makes the next character literal.  Matching is
case-sensitive and anchored at both ends, as upstream ``wildmat.c``.
"""

from __future__ import annotations

_TRUE, _FALSE, _ABORT = 1, 0, -1


def wildmat(pattern: str, text: str) -> bool:
    """Whether *text* matches the whole of *pattern*."""
    return _match(text, 0, pattern, 0) == _TRUE


def _match(text: str, ti: int, p: str, pi: int) -> int:
    """Rich Salz's DoMatch: TRUE, FALSE, or ABORT (text ran out; no later
    star can help, which keeps ``a*a*a*b`` linear instead of exponential)."""
    n, tn = len(p), len(text)
    while pi < n:
        c = p[pi]
        if ti == tn and c != "*":
            return _ABORT
        if c == "\\":
            if pi + 1 < n:  # a trailing backslash stands for itself
                pi += 1
            if text[ti] != p[pi]:
                return _FALSE
        elif c == "?":
            pass
        elif c == "*":
            while pi + 1 < n and p[pi + 1] == "*":
                pi += 1
            pi += 1
            if pi == n:
                return _TRUE
            while ti < tn:
                result = _match(text, ti, p, pi)
                if result != _FALSE:
                    return result
                ti += 1
            return _ABORT
        elif c == "[":
            pi, matched = _klass(text[ti], p, pi)
            if not matched:
                return _FALSE
        elif text[ti] != c:
            return _FALSE
        ti += 1
        pi += 1
    return _TRUE if ti == tn else _FALSE


def _klass(ch: str, p: str, pi: int) -> tuple[int, bool]:
    """Match *ch* against the class opening at ``p[pi]``; returns the index
    of its closing ``]`` and whether *ch* is accepted."""
    n = len(p)
    reverse = pi + 1 < n and p[pi + 1] == "^"
    if reverse:
        pi += 1
    matched = False
    if pi + 1 < n and p[pi + 1] in "]-":
        pi += 1
        matched = p[pi] == ch
    last = p[pi]
    pi += 1
    while pi < n and p[pi] != "]":
        if p[pi] == "-" and pi + 1 < n and p[pi + 1] != "]":
            pi += 1
            if last <= ch <= p[pi]:
                matched = True
        elif p[pi] == ch:
            matched = True
        last = p[pi]
        pi += 1
    return pi, matched != reverse
