"""Results -> what the book's chapters show: sentences, tables (great_tables) and figures
(matplotlib).

May import: the top-level infrastructure (``paths``, ``io``, ``settings``, ``provenance``)
and other modules of this layer. It reads results/ and data/derived/ only: anything it
shows that needs fitting is computed by ``analyses`` and written as results.

Public names: ``report.load`` / ``report.Report`` (every table the book reads, and
sentences built from the numbers), ``tables`` (one function per table), ``figures`` (one
per figure), ``validation`` (the validation appendix) and ``reference_values`` (published
values of established implementations).
"""

__all__ = ["report", "tables", "figures", "validation", "reference_values"]
