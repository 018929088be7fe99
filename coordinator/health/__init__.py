"""The coordinator's health side: MQTT ingest, device registry, selection policy, fleet view.

``service.HealthService`` ties them together for ``orchard-coordinator run`` and ``demo``.
"""
