"""Sensor sampling: drivers, the registry that names them, validation and the sampler.

    config = build_sensors(agent_toml["sensors"], clock=time.time)
    sampler = Sampler(config, sink=store.append)
    sampler.start()
    ...
    sampler.status()   # per-sensor state and counters for /metrics and health
    sampler.stop()

Drivers (``registry.names()``): ``system``, ``bme280``, ``mqtt``, ``csv``, ``synthetic``,
``image_dir``. Driver modules are imported only when configured, so an agent without an MQTT
sensor never imports paho, and one without a camera folder never imports Pillow.
"""

from agent.sensors.base import Clock, DriverBase, DriverFactory, Feature, SensorDriver
from agent.sensors.config import ConfiguredSensor, SensorSettings, build_sensors
from agent.sensors.registry import get, names, register
from agent.sensors.sampler import Sampler, SamplerSettings
from agent.sensors.status import SensorState, SensorStatus
from agent.sensors.validate import ReadingValidator, Reject

__all__ = [
    "Clock",
    "ConfiguredSensor",
    "DriverBase",
    "DriverFactory",
    "Feature",
    "ReadingValidator",
    "Reject",
    "Sampler",
    "SamplerSettings",
    "SensorDriver",
    "SensorSettings",
    "SensorState",
    "SensorStatus",
    "build_sensors",
    "get",
    "names",
    "register",
]
