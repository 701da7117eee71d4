"""Interoperability: models trained by other codebases behind fastbfm's BFM protocol."""
