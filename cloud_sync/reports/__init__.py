"""Clinician-facing reports of the cloud twin.

* :mod:`~cloud_sync.reports.agp` - AGP data (International Consensus, Battelino 2019) from plain readings.
* :mod:`~cloud_sync.reports.svg` - server-side SVG charts (ranges bar, modal day, daily strips, twin parameters).
* :mod:`~cloud_sync.reports.clinical` - patient-list flags, twin parameter series, advice log.
* :mod:`~cloud_sync.reports.pages` - Jinja2 pages and the FHIR route, behind consent and audit.
* :mod:`~cloud_sync.reports.routes` - ``register_routes(app)``: mounts the pages, FHIR and Nightscout routes.
"""
