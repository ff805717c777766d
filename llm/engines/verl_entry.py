"""verl's entry point for entrolab (``[project.entry-points."verl.plugins"]``): the advantage estimator and
the loss (``llm.engines.verl_plugin``), then the trainer mode ``entrolab`` (``llm.engines.verl_trainer``)
where verl's trainer runtime is installed. verl swallows a plugin's import errors, so a missing runtime
is recorded instead and reported by ``check_verl_config`` when the trainer mode is asked for."""

from llm.engines import verl_plugin

try:
    from llm.engines import verl_trainer  # noqa: F401  (registers trainer mode "entrolab")
except ImportError as e:  # verl's trainer runtime (TransferQueue, hydra, ...) is not installed here
    verl_plugin._TRAINER_IMPORT_ERROR[:] = [f"{type(e).__name__}: {e}"]
