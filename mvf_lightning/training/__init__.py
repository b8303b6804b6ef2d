"""Training: the LightningModule and what keeps a run going.

* :mod:`.module`: :class:`~.module.MVFormerModule` wires the model, the loss, the optimiser,
  the schedule and logging;
* :mod:`.runs`: run identity (a stable folder and W&B run) and ``--resume auto``;
* :mod:`.exact_resume`: resuming from any checkpoint repeats the uninterrupted run;
* :mod:`.faults`: SIGTERM checkpoints, ``status.json``, no empty log folders;
* :mod:`.slurm_requeue`: Slurm's requeue signal acted on at a step boundary;
* :mod:`.lightning_private`: every use of Lightning's private API, in one place.
"""
