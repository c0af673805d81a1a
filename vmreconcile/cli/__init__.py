"""The command line: one thin module per command, each with ``register(app)``."""
