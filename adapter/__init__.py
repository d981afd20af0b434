"""stadspas-adapter: child budgets (kindpakket) on an existing city pass (stadspas).

The core package knows no web framework and no particular source system:
the API, the CLI and the scheduler are thin shells over its functions.
"""

__version__ = "0.1.0"
