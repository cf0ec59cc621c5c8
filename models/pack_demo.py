"""Pack a trained demo model for the repository: weights as float16, restored to float32 on first use.

    python models/pack_demo.py models/runs/demo/inference_model models/pp_liteseg_t_synthetic

Copies deploy.yaml and the program, stores model.pdiparams as model.pdiparams.fp16.npz, and records in
manifest.json the sha256 of the float32 file that restoring gives back (the model users get).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from deploy_kit.paddleseg.deploy_config import load_deploy_config
from deploy_kit.fileio import sha256_file
from deploy_kit.paddleseg.demo import MANIFEST, PACKED_PARAMS
from deploy_kit.paddleseg.pdiparams import compress_to_fp16, restore_from_fp16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    deploy = load_deploy_config(args.source)
    args.dest.mkdir(parents=True, exist_ok=True)
    files = ["deploy.yaml", deploy.model_file.name]
    for name in files:
        shutil.copyfile(args.source / name, args.dest / name)
    compress_to_fp16(deploy.params_file, args.dest / PACKED_PARAMS)
    with tempfile.TemporaryDirectory() as tmp:
        restored = Path(tmp) / "model.pdiparams"
        restore_from_fp16(args.dest / PACKED_PARAMS, restored)
        digest = sha256_file(restored)
    (args.dest / MANIFEST).write_text(json.dumps({"files": files, "pdiparams_sha256": digest}, indent=2) + "\n")
    print(f"packed {args.source} into {args.dest} (restored weights sha256 {digest[:12]}…)")


if __name__ == "__main__":
    main()
