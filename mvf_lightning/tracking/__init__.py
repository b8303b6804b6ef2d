"""Experiment tracking, Lightning-free: W&B's mode before a run (:mod:`.wandb_setup`), the
names of W&B sweep runs (:mod:`.sweep`), each run's ``status.json`` (:mod:`.run_status`) and
the ``results`` table over run folders (:mod:`.results`)."""
