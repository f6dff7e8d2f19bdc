"""The envrules files of a session: from.envrules, rcpt.envrules,
auth.envrules and domainqueue, read through the control directory.

Each kind has upstream's file name and the variable that names another
file (``FROMRULES``, ``RCPTRULES``, ``AUTHRULES``, ``DOMAINQUEUE``); a
relative name is taken in the control directory.  Parsed rules are cached
and re-read when the file changes, like every control file.  The service
gives a :class:`RulesFiles` to the protocol, which never opens a file.

``domainqueue`` lines are ``domain:VAR=val,...`` matched (wildmat) against
the recipient's domain (upstream ``domainqueue()``); the others against the
whole address (a regex when ``QREGEX`` is set).
"""

from __future__ import annotations

from typing import Callable, Mapping

from indimail.config.control import ControlFiles
from indimail.config.envrules import load_envrules, match_envrules

from .address import domain_of

# kind -> (variable naming the file, default control file name)
KINDS = {
    "from": ("FROMRULES", "from.envrules"),
    "rcpt": ("RCPTRULES", "rcpt.envrules"),
    "auth": ("AUTHRULES", "auth.envrules"),
    "domainqueue": ("DOMAINQUEUE", "domainqueue"),
}

Assignments = list[tuple[str, "str | None"]]


class RulesFiles:
    """The envrules of one control directory."""

    def __init__(self, control: ControlFiles, settings: Callable[[Mapping[str, str]], object]):
        self.control = control
        self.settings = settings   # re-derives SessionSettings from a changed env

    def _rules(self, kind: str, env: Mapping[str, str]):
        variable, default = KINDS[kind]
        name = env.get(variable) or default
        # relative: in the control directory; absolute: ControlFiles' path()
        # joins it to nothing, and caches it like any control file
        return self.control.parsed(name, load_envrules) or []

    def assignments(self, kind: str, env: Mapping[str, str], address: str) -> Assignments:
        """What the *kind* rules matching *address* set and unset, in file order."""
        rules = self._rules(kind, env)
        if not rules:
            return []
        if kind == "domainqueue":
            domain = domain_of(address)
            return match_envrules(rules, domain) if domain else []
        regex = "QREGEX" in env
        if kind == "auth":
            result: Assignments = []
            for rule in rules:
                if rule.matches(address, regex) or rule.matches("", regex):
                    result.extend(rule.assignments)
            return result
        return match_envrules(rules, address, regex=regex)
