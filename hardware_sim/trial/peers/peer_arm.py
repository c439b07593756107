"""What every peer arm shares: one long-lived peer process per arm, one policy per trial row.

A subclass names its service (the JSON-lines process), its per-row policy and its config type.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from hardware_sim.trial.observation import ArmAction, ArmObservation, ArmSetup


class PeerArm:
    service_type: ClassVar[Any]
    policy_type: ClassVar[Any]
    config_type: ClassVar[Any]
    arm_name: ClassVar[str]

    def __init__(self, config: Any = None, name: str | None = None) -> None:
        self.name = name or self.arm_name
        self.config = config or self.config_type()
        self._service: Any = None
        self._policies: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:  # a process cannot travel to a dask worker; it restarts there
        return {"name": self.name, "config": self.config, "_service": None, "_policies": []}

    def start(self, setup: ArmSetup) -> None:
        if self._service is None or not self._service.process.alive():
            self._service = self.service_type(stderr_path=os.environ.get("GLUCOTWIN_PEER_STDERR"))
        for policy in self._policies:
            policy.close()
        self._policies = [self.policy_type(setup.row(i), self._service, self.config) for i in range(setup.n_rows)]

    def decide(self, observation: ArmObservation) -> ArmAction:
        return ArmAction.stack([p.decide(observation.row(i)).validated(1) for i, p in enumerate(self._policies)])

    def close(self) -> None:
        for policy in self._policies:
            policy.close()
        self._policies = []
        if self._service is not None:
            self._service.close()
            self._service = None
