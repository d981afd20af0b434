"""Built-in connectors. Each registers under the ``stadspas_adapter.connectors``
entry-point group in pyproject.toml, exactly like a third-party one would."""
