"""entrolab's controllers inside the RL engines people scale with.

- ``llm.engines.trl_grpo``: ``EntropyControlledGRPOTrainer``, a subclass of TRL's ``GRPOTrainer`` whose
  advantages and loss are an entrolab pipeline (tested with ``trl==1.16.0``; extra ``trl``).
- ``llm.engines.verl_plugin``: the advantage estimator and the loss ``entrolab`` inside verl (tested with
  ``verl==0.9.1``), and the check of verl's config; ``llm.engines.verl_trainer``: the trainer mode
  ``entrolab`` that keeps controller state; ``llm.engines.verl_entry``: verl's entry point, which
  registers both.
- ``llm.engines.state``: the controller-state file both engines keep in their checkpoints.

Each adapter is a host in the sense of ``controllers.contract``: it declares what it can feed a pipeline
and refuses, before any work, a controller it cannot feed or an engine option it would silently override.
docs/engines.md says what each engine computes per micro-batch and what the adapters change.
"""
