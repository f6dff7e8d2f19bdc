"""Built-in SMTP policy checks, each a plugin of :mod:`indimail.plugins`.

Every module here may define ``PLUGINS = {name: factory}``; the loader
collects them all.  A factory is called with a
:class:`~indimail.plugins.api.PluginSetup` and returns the plugin.
"""
