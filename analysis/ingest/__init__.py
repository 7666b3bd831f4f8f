"""From raw trial files to the master data: trial specs, readers, instruments,
harmonisation, the derived-data schemas and drafting a spec from a new file.

May import: the top-level infrastructure (``errors``, ``settings``, ``paths``, ``io``) and
other modules of this layer; never ``models``, ``analyses`` or ``book`` (harmonisation fits
nothing).

Public names: ``spec.load_spec`` / ``spec.TrialSpec``, ``readers.read_raw``,
``instruments.INSTRUMENTS``, ``harmonise.harmonise_trial`` / ``harmonise.harmonise_all``,
``schema.PARTICIPANTS`` / ``schema.OUTCOMES`` / ``schema.validate`` and
``newspec.write_draft``.
"""

__all__ = ["spec", "readers", "instruments", "harmonise", "schema", "newspec"]
