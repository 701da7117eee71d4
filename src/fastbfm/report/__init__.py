"""Plots and model cards."""
