"""runc's command line, one module per verb, over the native engine.

Engines call these verbs exactly as they call runc (docs: shared notes on
engines): global flags before the verb, flags in any order after it.
"""
