"""Fast adaptation on a frozen BFM: zero-shot prompting and LoLA."""
