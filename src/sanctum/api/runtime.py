"""What a running instance holds: settings, the catalog and the keys derived from the master key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sanctum.config import Settings, check_startable
from sanctum.datasets.keyring import Keyring
from sanctum.db.session import Database
from sanctum.security.keys import SecretBox, derive_key, load_master_key
from sanctum.store import LocalBlobStore


@dataclass
class Runtime:
    settings: Settings
    db: Database
    totp_box: SecretBox
    keyring: Keyring
    store: LocalBlobStore
    jobs: Any = None  # the local job runner (sanctum.jobs.runner.JobRunner) while the app is up
    ingest: Any = None  # de-identification workers (sanctum.ingest.workers), started on first use

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Refuses (ConfigError / KeyError_) on an unsafe configuration before anything listens."""
        check_startable(settings)
        master = load_master_key(settings.resolved_master_key_file)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
            totp_box=SecretBox(derive_key(master, "sanctum/totp-secrets/v1")),
            keyring=Keyring(master),
            store=LocalBlobStore(settings.data_dir / "blobs"),
        )

    def close(self) -> None:
        workers, self.ingest = self.ingest, None
        if workers is not None:
            workers.close()
        self.db.dispose()
