"""fastbfm.evaluate."""
