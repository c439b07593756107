"""In-silico trials: arms (dosing policies that see only what a hub sees) run over virtual cohorts x seeds.

Modules: ``observation`` (ArmObservation, ArmAction, Arm protocol, PerSubjectArm), ``arms`` (basal-bolus
baselines), ``engine`` (run_trial), ``results`` (tables, JSON, CSV), ``distributed`` (dask), ``cli``.
Kept import-light: ``glucotwin trial --help`` must not pay for the simulator.
"""
