"""fastbfm.bfm."""
