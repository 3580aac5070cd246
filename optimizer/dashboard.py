"""`dashboard`: optuna-dashboard on a study's storage and artifact store."""

from __future__ import annotations

import argparse
import logging

from optimizer.errors import UsageError

log = logging.getLogger(__name__)


def serve(*, storage_url: str, study_name: str, artifact_dir, host: str, port: int) -> None:
    """Starts optuna-dashboard (blocking) after checking the study exists."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from optimizer.storage import load_existing

    study = load_existing(study_name, url=storage_url)
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    store = None
    if artifact_dir.is_dir():
        store = FileSystemArtifactStore(str(artifact_dir))
    print(
        f"optuna-dashboard for study {study_name!r} ({len(study.trials)} trials): "
        f"http://{host}:{port}/dashboard/studies/{study._study_id}  (Ctrl-C stops it)",
        flush=True,
    )
    run_server(study._storage, host=host, port=port, artifact_store=store)


def dashboard_command(args: argparse.Namespace) -> int:
    """CLI entry for `dashboard`."""
    from optimizer.storage import run_dir_for, storage_url, study_name
    from studies import get_study

    name = study_name(get_study(args.study).name, smoke=args.smoke)
    run_dir = run_dir_for(name, run_dir=args.run_dir)
    serve(
        storage_url=storage_url(run_dir=run_dir, storage=args.storage), study_name=name,
        artifact_dir=run_dir / "artifact-store", host=args.host, port=args.port,
    )
    return 0
