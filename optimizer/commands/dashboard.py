"""`dashboard`: optuna-dashboard on a study's storage and artifact store."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from pathlib import Path

from definitions.errors import UsageError
from optimizer.commands.lookup import stored_study_name
from optimizer.store.artifacts import store_dir_for
from optimizer.store.storage import load_existing, open_storage, run_dir_for, storage_url

log = logging.getLogger(__name__)


def url_of(*, host: str, port: int) -> str:
    """`http://host:port`, an IPv6 address in brackets (RFC 3986: `http://[::1]:8080`)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port_free(*, host: str, port: int) -> None:
    """`UsageError` unless a server could listen on host:port now.

    Binds a socket the way the dashboard's server will (address reuse on, so a port in
    TIME_WAIT counts as free) and closes it at once.
    """
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use; pass --port with a free port"
            ) from None
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; "
            "pass another --host or --port"
        ) from None


def serve(
    *, storage_url: str, study_name: str, artifact_dir: Path, host: str, port: int
) -> None:
    """Starts optuna-dashboard (blocking) after checking the study exists and the port
    is free."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    opt_study = load_existing(study_name, url=storage_url)  # UsageError naming stored studies
    storage = open_storage(storage_url, must_exist=True)
    study_id = storage.get_study_id_from_name(study_name)
    check_port_free(host=host, port=port)
    store = None
    if artifact_dir.is_dir():
        store = FileSystemArtifactStore(str(artifact_dir))
    print(
        f"optuna-dashboard for study {study_name!r} ({len(opt_study.trials)} trials): "
        f"{url_of(host=host, port=port)}/dashboard/studies/{study_id}  (Ctrl-C stops it)",
        flush=True,
    )
    try:
        run_server(storage, host=host, port=port, artifact_store=store)
    except OSError as error:  # e.g. another process took the port since the check
        raise UsageError(
            f"optuna-dashboard could not serve on {host}:{port}: {error.strerror or error}; "
            "pass --port with a free port"
        ) from None


def dashboard_command(args: argparse.Namespace) -> int:
    """CLI entry for `dashboard`."""
    name = stored_study_name(args)
    run_dir = run_dir_for(name, run_dir=args.run_dir)
    serve(
        storage_url=storage_url(run_dir=run_dir, storage=args.storage), study_name=name,
        artifact_dir=store_dir_for(run_dir, artifact_dir=args.artifact_dir), host=args.host,
        port=args.port,
    )
    return 0
