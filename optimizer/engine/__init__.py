"""The run engine: how a search runs.

The runner (prepare → search → finish), resuming, the trial loop, the objective a trial
evaluates, the parents, successive halving, the front extension, finalists, test-split
scoring, the sampler, the KerasTuner backend, the worker processes and the progress line.
It reads and writes studies through `optimizer.store` and never imports the commands.
"""
