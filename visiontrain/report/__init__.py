"""Plots and reports of run folders: PNGs in runs/<name>/plots/, a self-contained report.html, and a page
comparing runs. Everything is drawn from the files of the run folder, so it can be redrawn at any time."""
from __future__ import annotations

from .data_report import write_data_report
from .html import compare_runs, diagnose, write_report
from .plots import plot_misclassified, write_run_plots

__all__ = ["write_run_plots", "write_report", "compare_runs", "plot_misclassified", "diagnose", "write_data_report"]
