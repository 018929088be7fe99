"""Where a plan goes: ``rootfs`` (a mounted root), ``ssh`` (a running board), ``image`` (.img).

Each target kind implements :class:`Target`; ``get(name)`` returns its class::

    target = get("rootfs")(root=Path("/mnt/pi-root"))
    report = target.apply(plan)
"""

from __future__ import annotations

from typing import Any, Protocol

from provisioning.errors import InvalidOption
from provisioning.plan import Plan
from provisioning.tree import ApplyReport


class Target(Protocol):
    def apply(self, plan: Plan) -> ApplyReport:
        """Bring the target to the plan; change nothing that already matches."""
        ...


def _registry() -> dict[str, Any]:
    from provisioning.targets.image import ImageTarget
    from provisioning.targets.rootfs import RootfsTarget
    from provisioning.targets.ssh import SshTarget

    return {"image": ImageTarget, "rootfs": RootfsTarget, "ssh": SshTarget}


def names() -> list[str]:
    return sorted(_registry())


def get(name: str) -> Any:
    """The target class called ``name``; a helpful error for an unknown one."""
    registry = _registry()
    if name not in registry:
        raise InvalidOption("target", name, f"one of {sorted(registry)}")
    return registry[name]
