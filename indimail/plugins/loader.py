"""Find and build plugins: the built-in policy checks, the ``indimail.plugins``
entry point group, ``PLUGIN0``, ``PLUGIN1``, ... variables and the optional
``control/smtpplugins`` list.

Without ``smtpplugins`` every built-in plugin (each acts only when its
control file or variable says so, as qmail-smtpd's checks do), every
installed entry point and every ``PLUGINn`` is loaded, each run in its own
``order``.  With ``smtpplugins`` exactly the names listed there are loaded,
in the order listed: a built-in name, an entry point name or a
``module:attribute`` path; a line ``-name`` drops a plugin from the
default set instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Mapping

from .api import PluginSetup

GROUP = "indimail.plugins"
CONTROL = "smtpplugins"


class PluginLoadError(Exception):
    """A plugin named by the configuration cannot be loaded."""


def builtin_factories() -> dict[str, Callable]:
    """``PLUGINS`` of every module of :mod:`indimail.policy`."""
    import indimail.policy as package
    found: dict[str, Callable] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.update(getattr(module, "PLUGINS", {}))
    return found


def entry_point_factories() -> dict[str, Callable]:
    found = {}
    for ep in entry_points(group=GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as e:
            raise PluginLoadError(f"entry point {ep.name} ({ep.value}): {e}") from e
    return found


def load_dotted(path: str) -> Callable:
    """``package.module:attribute`` (or ``package.module.attribute``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PluginLoadError(f"{path}: not a module:attribute path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginLoadError(f"{path}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginLoadError(f"{path}: module {module_name} has no {attr}") from None


def numbered_variables(env: Mapping[str, str]) -> list[str]:
    """``PLUGIN0``, ``PLUGIN1``, ... up to the first one missing."""
    paths, n = [], 0
    while env.get(f"PLUGIN{n}"):
        paths.append(env[f"PLUGIN{n}"].strip())
        n += 1
    return paths


def _build(name: str, factory: Callable, setup: PluginSetup):
    try:
        plugin = factory(setup)
    except Exception as e:
        raise PluginLoadError(f"plugin {name}: {e}") from e
    if not getattr(plugin, "name", None):
        try:
            plugin.name = name
        except AttributeError:
            pass
    return plugin


def load_plugins(setup: PluginSetup, control_lines: list[str] | None = None) -> list:
    """Build the service's plugins; *control_lines* is ``smtpplugins``
    (None when the file does not exist)."""
    known = {**builtin_factories(), **entry_point_factories()}
    extra = numbered_variables(setup.env)
    explicit = [line.strip() for line in control_lines or [] if line.strip()]
    listed = [n for n in explicit if not n.startswith("-")]
    if control_lines is not None and listed:
        plugins = []
        for position, name in enumerate(listed):
            factory = known.get(name) or load_dotted(name)
            plugin = _build(name, factory, setup)
            plugin.order = position * 10
            plugins.append(plugin)
        return plugins
    dropped = {n[1:] for n in explicit if n.startswith("-")}
    plugins = [_build(name, factory, setup) for name, factory in known.items()
               if name not in dropped]
    plugins += [_build(path, load_dotted(path), setup) for path in extra]
    return plugins
