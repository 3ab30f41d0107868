"""prunetune: multi-objective search for fast, small, accurate transformer classifiers."""

__version__ = "0.1.0"
