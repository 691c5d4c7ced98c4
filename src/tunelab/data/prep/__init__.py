"""Data preparation behind `tunelab data ...`: validate, clean, balance, split, convert and stats,
each over any format tunelab reads (JSONL, JSON, CSV, a `datasets` directory)."""

from tunelab.data.prep.balance import balance_file, balance_rows
from tunelab.data.prep.clean import clean_file, clean_rows, normalize_text
from tunelab.data.prep.convert import convert_file, convert_rows
from tunelab.data.prep.split import check_leakage, kfold_rows, split_file, split_rows
from tunelab.data.prep.stats import dataset_stats, plot_lengths
from tunelab.data.prep.validate import Report, validate_file

__all__ = ["Report", "balance_file", "balance_rows", "check_leakage", "clean_file", "clean_rows",
           "convert_file", "convert_rows", "dataset_stats", "kfold_rows", "normalize_text",
           "plot_lengths", "split_file", "split_rows", "validate_file"]
