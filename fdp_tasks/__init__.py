"""fdp-tasks: a make-style declarative build tool for FAIR Data Pipeline projects."""

__version__ = "0.1.0"
