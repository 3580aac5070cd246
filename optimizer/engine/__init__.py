"""The run engine: how a search runs.

The runner (prepare → search → finish) and its run settings, resuming, the data, the
trial loop, the objective a trial evaluates and the task it hands a worker, the parents,
successive halving, the front extension, finalists, test-split scoring, the sampler, the
KerasTuner backend, the worker processes (their messages, threads and stop request), the
progress line and its plots.
It reads and writes studies through `optimizer.store` and never imports the commands.
"""
