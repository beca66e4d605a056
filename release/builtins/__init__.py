"""FreeBSD's install-time steps, redone in pure Python.

On a FreeBSD builder the static flavour's recipe and the packages' post-install
scripts run host tools (pwd_mkdb, services_mkdb, certctl, pkg).  Each module here
produces the same files from the same inputs on any host and for any target
architecture, so a layer's bytes do not depend on where it was built.
"""
