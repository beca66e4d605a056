"""The embedded demo release: a small, real pkgbase repository and src tree.

Everything here is generated deterministically from data shipped in the project,
so `doit build:demo` works offline on a fresh clone and tests have realistic inputs.
"""
