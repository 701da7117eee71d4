"""Fast adaptation on a frozen BFM: zero-shot prompting, the adaptation methods behind one `Adapter` interface, and their registry (`methods.py`)."""
