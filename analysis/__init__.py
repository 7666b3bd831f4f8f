"""Reproducible one-stage IPD meta-analysis of exercise therapy for persistent low back pain."""

__version__ = "0.1.0"
