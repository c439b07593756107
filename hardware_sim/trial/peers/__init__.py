"""Trial arms for the systems people use today, and the registration hook for the GlucoTwin and peer arms.

* ``oref0``: OpenAPS oref0 0.7.1 (node, ``oref0_runner.js``), SMB on;
* ``loop`` / ``loop-ab``: Loop's algorithm through PyLoopKit (own virtualenv, ``loop_runner.py``), temp basal
  only / with automatic bolus;
* ``glucotwin`` (in ``hardware_sim.trial.glucotwin_arm``): the hub's twin and recommender, advice accepted.

The peers are installed on demand into ``.peers/`` by ``python -m hardware_sim.trial.peers.install``.

The comparison (same subjects, scenario realisations and sensor errors for every arm)::

    python -m hardware_sim.trial.peers.install
    glucotwin trial --arms basal-bolus,oref0,loop,glucotwin --cohort all --days 14 --seeds 1,2,3 \
        --scenario challenging --json OUT.json
    python -m hardware_sim.trial.peers.compare OUT.json        # per-group table + goal check

Runs may be split by arm and / or age group (``--cohort adults`` ...) and compared together:
``compare`` pools the rows and refuses arms that ran different subjects or seeds. Per-decision cost:
``python -m hardware_sim.trial.peers.bench_arms``. Set ``GLUCOTWIN_PEER_STDERR=FILE`` to keep the peers'
own stderr.
:func:`register_peer_arms` is called once by ``hardware_sim.trial.arms``; the factories import their modules
only when an arm is built, so ``glucotwin trial --help`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_glucotwin() -> Any:
    from hardware_sim.trial.glucotwin_arm import make_glucotwin_arm

    return make_glucotwin_arm()


def make_glucotwin_eat_at_once() -> Any:
    from hardware_sim.trial.glucotwin_arm import make_glucotwin_arm_eating_at_once

    return make_glucotwin_arm_eating_at_once()


def make_glucotwin_every_step() -> Any:
    from hardware_sim.trial.glucotwin_arm import make_glucotwin_arm_every_step

    return make_glucotwin_arm_every_step()


def make_glucotwin_hub_cadence() -> Any:
    from hardware_sim.trial.glucotwin_arm import make_glucotwin_arm_pipeline_cadence

    return make_glucotwin_arm_pipeline_cadence()


def make_oref0() -> Any:
    from hardware_sim.trial.peers.oref0_arm import make_oref0_arm

    return make_oref0_arm()


def make_loop() -> Any:
    from hardware_sim.trial.peers.loop_arm import make_loop_arm

    return make_loop_arm()


def make_loop_automatic_bolus() -> Any:
    from hardware_sim.trial.peers.loop_arm import make_loop_automatic_bolus_arm

    return make_loop_automatic_bolus_arm()


PEER_ARM_FACTORIES: dict[str, Callable[[], Any]] = {
    "glucotwin": make_glucotwin,
    "glucotwin-eat-at-once": make_glucotwin_eat_at_once,
    "glucotwin-every-step": make_glucotwin_every_step,
    "glucotwin-hub-cadence": make_glucotwin_hub_cadence,
    "oref0": make_oref0,
    "loop": make_loop,
    "loop-ab": make_loop_automatic_bolus,
}


def register_peer_arms(register_arm: Callable[[str, Callable[[], Any]], None]) -> None:
    for name, factory in PEER_ARM_FACTORIES.items():
        register_arm(name, factory)
