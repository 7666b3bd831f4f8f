"""From raw trial files to the master data: trial specs, readers, instruments, one record
per participant from a trial's tables (records), harmonisation, guards against spec
mistakes, the derived-data schemas and drafting a spec from a new file.

May import: the top-level infrastructure (``errors``, ``settings``, ``paths``, ``io``) and
other modules of this layer; never ``models``, ``analyses`` or ``book`` (harmonisation fits
nothing).

Public names: ``spec.load_spec`` / ``spec.TrialSpec``, ``readers.read_raw``,
``instruments.INSTRUMENTS``, ``records.build_records``, ``harmonise.harmonise_trial`` /
``harmonise.harmonise_all``, ``guards.spec_problems`` / ``guards.cross_trial_problems``,
``schema.PARTICIPANTS`` / ``schema.OUTCOMES`` / ``schema.validate`` and
``newspec.write_draft``.
"""

__all__ = ["spec", "readers", "instruments", "records", "harmonise", "guards", "schema", "newspec"]
