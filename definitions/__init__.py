"""The bottom layer: pure definitions every other package checks against (DESIGN §3).

It imports neither TensorFlow nor Optuna, nor any package of this project:
- `errors`: the one exception hierarchy (the usage error / trial failure split);
- `vocabulary`: the words every layer checks against (quantization modes, parent kinds,
  inits, outputs, size objectives, schedules, samplers, backends, …) — the CLI's choices
  read them;
- `budgets`: `Budget` (how much a trial trains) and `DeviceBudgets` (flash, RAM, latency,
  accuracy limits);
- `attributes`: the names of the stored trial and study attributes;
- `sources`: whether a string the user gives names a file or folder (data) or Python code
  (`classify`), the one rule the loaders and the record-trust check share;
- `importer`: `module:attr` and `file.py:attr` references, imported when a user names one.
"""
