"""Converters from the public and CARL releases into the project's JSON index, plus ``check``.

Entry point: :func:`mvf_lightning.prepare.cli.main` (``python -m mvf_lightning prepare``).
Modules: ``penn_action``, ``finegym`` (with ``cut_clip``), ``kinetics400``, ``pouring``,
``carl`` (shared CARL pickle handling), ``safe_pickle`` (restricted unpickling), ``check``,
``common``/``media`` (shared plumbing). Nothing here imports Lightning.
"""
