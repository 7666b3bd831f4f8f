"""Reproducible one-stage IPD meta-analysis of exercise therapy for persistent low back pain.

The package is layered; each folder is one layer, and lower layers never import higher ones
(tests/test_layers.py checks this):

- top-level modules ``paths``, ``io``, ``errors``, ``settings``, ``timing``, ``provenance``:
  the infrastructure every layer may use;
- ``models``: estimators on arrays (no files, no domain knowledge);
- ``ingest``: trial specs, raw-file readers and harmonisation -> the master data;
- ``analyses``: the prespecified analyses, master data -> results rows (through ``models``);
- ``book``: results -> sentences, tables and figures for the Quarto chapters;
- ``federated``: the same analyses on vantage6, trial data staying at their sites;
- entry points ``cli`` (``python -m analysis``), ``pipeline`` and the synthetic-data generator ``demo``.
"""

__version__ = "0.2.0"
__all__ = ["models", "ingest", "analyses", "book"]
