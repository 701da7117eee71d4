"""Run folders, plots, videos, the HTML report, the adaptation summary and model cards."""
