"""The command line and its configuration: ``python -m mvf_lightning <command>``.

* :mod:`.commands`: the commands (``fit | validate | test | predict | summary | prepare | evaluate |
  results | align``), each imported only when it runs, and how errors are reported;
* :mod:`.lightning_cli`: LightningCLI for the Lightning commands (parser, the trainer's
  arguments, the resolved config saved with each run);
* :mod:`.checkpoint_settings`: what ``--ckpt_path`` keeps of the checkpoint's settings;
* :mod:`.config_files`: ``inherit:`` between YAML configs;
* :mod:`.run_summary`: the last lines of a finished ``fit``: where its files are and the
  commands to try next.
"""

from .commands import main

__all__ = ["main"]
