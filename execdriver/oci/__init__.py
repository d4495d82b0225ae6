"""The OCI runtime spec: a bundle's config.json into a launch spec, and its hooks.

A regular package, not a namespace one: an import of a namespace package
searches every path entry, which costs a command 0.1 ms, and the frozen
file (freeze.py) serves only regular packages.
"""
