"""entrolab's one entry point: the ``entrolab`` console script (``entrolab.cli``), whose subcommands run what
``python -m sim``, ``python -m llm.train`` and the other module commands run, with the same flags and help."""
