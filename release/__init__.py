"""FreeBSD OCI container image release pipeline: the library behind the doit tasks.

Nothing in this package imports doit; every function takes explicit paths and
returns values, so the same code serves the tasks, the tests and the benchmarks.
"""
