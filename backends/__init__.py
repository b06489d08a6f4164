"""Backends: one module per target, discovered through the
``snn_compile.backends`` entry-point group (see ``registry``)."""
