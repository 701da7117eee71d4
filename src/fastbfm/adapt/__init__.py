"""fastbfm.adapt."""
