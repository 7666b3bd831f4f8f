"""Federated one-stage IPD meta-analysis on vantage6: trial data never leave their sites.

May import: the top level, models, ingest and analyses (CONTRACT.md, package layers).

vantage6 calls the functions named here (the algorithm image sets PKG_NAME to this package):
``site_summaries`` and ``site_likelihoods`` at each site, ``central`` at the centre. The
pipeline's entry point is ``python -m analysis federated --mock`` (``mock.run_mock``).
"""

from analysis.federated.algorithm import central, site_likelihoods, site_summaries

__all__ = ["central", "site_summaries", "site_likelihoods"]
