"""The store: what a study keeps and how it is read back.

Optuna storage and its failures, the lock, the artifact store, the study's definition
record and what may be trusted in it, retries of trials cut short, the device-budget
constraints, the typed stored trial (`trial.StoredTrial`) and reading a front. The lowest
room of `optimizer/`: it imports neither the run engine nor the commands.
"""
