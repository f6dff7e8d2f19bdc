"""The SMTP plugin API (hooks, verdicts, loading); see ``docs/plugins.md``."""

from .api import (CONTINUE, HOOKS, ORDER_ACCESS, ORDER_CHECKS, ORDER_DEFAULT, ORDER_FIRST,
                  ORDER_HELO, ORDER_RECIPIENT, ORDER_RELAY, ORDER_SENDER, PluginSetup, Result,
                  Verdict, accept, denysoft, deny, discard, disconnect)
from .chain import PluginChain
from .context import HookContext
from .loader import PluginLoadError, load_plugins

__all__ = ["CONTINUE", "HOOKS", "ORDER_ACCESS", "ORDER_CHECKS", "ORDER_DEFAULT", "ORDER_FIRST",
           "ORDER_HELO", "ORDER_RECIPIENT", "ORDER_RELAY", "ORDER_SENDER", "PluginSetup",
           "Result", "Verdict", "accept", "denysoft", "deny", "discard", "disconnect",
           "PluginChain", "HookContext", "PluginLoadError", "load_plugins"]
