"""The shipped demo model: PP-LiteSeg-T trained on deploy-kit's synthetic street scenes.

Its weights are tracked as float16 (`model.pdiparams.fp16.npz`) to keep the repository small; the
first use restores the float32 `model.pdiparams` Paddle expects into the cache and checks it against
the recorded sha256, so every user converts exactly the model whose accuracy `models/README.md` reports.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_output, cache_root, sha256_file
from .pdiparams import restore_from_fp16

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "pp_liteseg_t_synthetic"
PACKED_PARAMS = "model.pdiparams.fp16.npz"
MANIFEST = "manifest.json"


def restore_default_model(packed_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """Returns a PaddleSeg inference folder for the shipped model, restoring it into the cache once."""
    manifest_path = packed_dir / MANIFEST
    if not manifest_path.is_file():
        raise ConfigError("the shipped default model is not here", path=packed_dir,
                          hint="run from a deploy-kit checkout installed with `pip install -e .`, or pass MODEL")
    manifest = json.loads(manifest_path.read_text())
    target = cache_root() / "models" / f"{packed_dir.name}-{manifest['pdiparams_sha256'][:12]}"
    params = target / "model.pdiparams"
    if params.is_file() and sha256_file(params) == manifest["pdiparams_sha256"]:
        return target
    print(f"restoring the demo model's float32 weights ({(packed_dir / PACKED_PARAMS).stat().st_size >> 20} MB packed) "
          f"into {target} (once)", file=sys.stderr)
    target.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        with atomic_output(target / name) as tmp:
            shutil.copyfile(packed_dir / name, tmp)
    with atomic_output(params) as tmp:
        restore_from_fp16(packed_dir / PACKED_PARAMS, tmp)
        if sha256_file(tmp) != manifest["pdiparams_sha256"]:
            raise ConfigError("restored weights do not match their checksum", path=packed_dir / PACKED_PARAMS,
                              note=f"expected sha256 {manifest['pdiparams_sha256'][:12]}…",
                              hint="restore the file from git: git checkout -- models/")
    return target
