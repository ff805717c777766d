"""sim: exact, batched tabular-softmax policies (bandits, token trees, gymnasium toy-text MDPs) trained
with the shared controllers; `python -m sim run|verify`."""
