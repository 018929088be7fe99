"""Device health over MQTT (docs/architecture.md, MQTT health).

``schema`` (topics and payload types) is pure stdlib so the coordinator can import it; the
runtime (``reporter``, ``outbox``, ``facts``) pulls in paho-mqtt and psutil and is imported only
by the agent process. Keep this ``__init__`` free of imports.
"""
