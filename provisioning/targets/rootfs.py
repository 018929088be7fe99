"""``rootfs``: apply the plan to a mounted root directory (an SD card's second partition)."""

from __future__ import annotations

import logging
from pathlib import Path

from provisioning import tree
from provisioning.errors import TargetError
from provisioning.plan import Plan

logger = logging.getLogger(__name__)


class RootfsTarget:
    """Writes files with their modes and enables units with symlinks, like
    ``systemctl --root=DIR enable``. Owners are applied on the board at boot by the plan's
    tmpfiles.d snippet, once sysusers.d created the ``orchard`` user."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def apply(self, plan: Plan) -> tree.ApplyReport:
        if not (self.root / "etc").is_dir():
            raise TargetError(f"{self.root} does not look like a root filesystem (no etc/)")
        want = tree.expected_state(plan)
        state = tree.local_state(self.root, list(want))
        changed = tree.changed_entries(plan, state)
        try:
            tree.write_tree(plan, self.root, changed)
        except OSError as exc:
            raise TargetError(f"cannot write into {self.root}: {exc}") from exc
        logger.info("rootfs %s: %d entries changed", self.root, len(changed))
        return tree.ApplyReport(f"rootfs {self.root}", changed, len(want) - len(changed))
