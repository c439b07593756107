"""The hub's cloud sync, in its own thread and its own SQLite connection (never on the real-time path).

First run: enrol with the one-time code from the clinic (``[cloud] enrollment_code``), keeping the device key
and credentials next to the database (mode 0600). Then: :class:`cloud_sync.sync_client.SyncClient` drains the
outbox in order, with retries and backoff, for as long as the hub runs.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cloud_sync.errors import PermanentSyncError, TransientSyncError
from cloud_sync.outbox import Outbox
from cloud_sync.sync_client import HubCredentials, SyncClient, SyncConfig, enroll

from ..config import HubConfig

logger = logging.getLogger(__name__)
ENROLL_RETRY_S = 30.0


def credentials_dir(config: HubConfig) -> Path:
    return config.storage_path.parent / "credentials"


def saved_credentials(config: HubConfig) -> HubCredentials | None:
    directory = credentials_dir(config)
    return HubCredentials.load(directory) if (directory / "hub-credentials.json").exists() else None


def load_or_enroll(config: HubConfig, stop: threading.Event) -> HubCredentials | None:
    saved = saved_credentials(config)
    if saved is not None:
        return saved
    directory = credentials_dir(config)
    if not config.cloud.enrollment_code or not config.cloud.url:
        logger.warning("cloud sync configured without an enrollment code and without saved credentials")
        return None
    while not stop.is_set():
        try:
            credentials = enroll(config.cloud.url, config.cloud.enrollment_code)
            credentials.save(directory)
            logger.info("enrolled with the cloud as device %s", credentials.device_id)
            return credentials
        except PermanentSyncError as error:
            logger.error("enrollment refused: %s", error)
            return None
        except (TransientSyncError, OSError, ValueError) as error:
            logger.info("enrollment not possible yet (%s); retrying", error)
        except Exception as error:  # requests' connection errors and friends: the cloud may be unreachable
            logger.info("cloud unreachable for enrollment (%s); retrying", error)
        stop.wait(ENROLL_RETRY_S)
    return None


def run_sync_worker(config: HubConfig, stop: threading.Event, *, idle_interval_s: float = 30.0) -> None:
    credentials = load_or_enroll(config, stop)
    if credentials is None:
        return
    outbox = Outbox.open(config.storage_path)
    try:
        assert config.cloud.url is not None
        client = SyncClient(outbox, credentials, SyncConfig(base_url=config.cloud.url, idle_interval_s=idle_interval_s))
        client.run(stop)
    finally:
        outbox.close()


def flush_outbox(config: HubConfig) -> int | None:
    """One last pass for a hub that has stopped taking readings: send what is pending, return what is left
    (``None`` when the hub never enrolled).

    Only with saved credentials (never enrols) and only when nothing else syncs this database; errors
    propagate, and whatever is not acknowledged stays in the outbox for the next run.
    """
    credentials = saved_credentials(config)
    if not config.cloud.url or credentials is None:
        return None
    outbox = Outbox.open(config.storage_path)
    try:
        client = SyncClient(outbox, credentials, SyncConfig(base_url=config.cloud.url))
        return client.sync_once().pending
    finally:
        outbox.close()
