"""fastbfm.report."""
