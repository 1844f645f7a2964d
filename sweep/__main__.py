"""`python -m sweep +grid=<name> [overrides]`: run a grid on Ray and write a run dir."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sweep.cli import CONF_DIR, guarded, run_main


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from sweep.app import run_sweep
    guarded(run_sweep, cfg)


if __name__ == "__main__":
    run_main(main)
