#!/usr/bin/python3
"""make_bundled_backbone.py - the backbone that ships with uniformaly (issue 14).

Why: every verb needs a backbone, and a fresh machine has none; the repository therefore
carries one, the ImageNet ViT-Tiny/16 of ../shared/weights (timm vit_tiny_patch16_224,
AugReg, Apache-2.0 upstream: see NOTICE), stored as FP16 to halve its size (22.9 MB ->
11.4 MB). This script is the only way that file is made, so anyone can check it: every
tensor is the shared float32 tensor rounded to float16 (numpy astype, round to nearest
even), names and shapes unchanged, the header written with sorted keys and no whitespace,
tensors in name order, so the output is the same bytes on every run.

    /usr/bin/python3 scripts/make_bundled_backbone.py [SRC] [DST]
SRC defaults to ../shared/weights/vit_tiny_patch16_224.safetensors (or $UF_SHARED/...),
DST to models/vit_tiny_patch16_224.fp16.safetensors. Needs only numpy.
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np

SRC_SHA256 = "efb349e144bd42e2f66078743baae7b773d80e974340db1af287191b3c7c3a30"


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(t["shape"])
    return out, sha


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = tensors[name].astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # 8-byte aligned tensor data, as the safetensors writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def main():
    shared = os.environ.get("UF_SHARED", "../shared")
    src = sys.argv[1] if len(sys.argv) > 1 else f"{shared}/weights/vit_tiny_patch16_224.safetensors"
    dst = sys.argv[2] if len(sys.argv) > 2 else "models/vit_tiny_patch16_224.fp16.safetensors"
    tensors, sha = read_safetensors(src)
    if sha != SRC_SHA256:
        sys.exit(f"{src}: sha256 {sha}, expected {SRC_SHA256} (not the shared ViT-Tiny/16)")
    for name, t in tensors.items():
        if not np.all(np.isfinite(t.astype(np.float16))):
            sys.exit(f"{name}: does not fit in float16")
    meta = {"source": "timm vit_tiny_patch16_224 (AugReg, ImageNet-21k -> 1k), Apache-2.0",
            "source_sha256": SRC_SHA256, "conversion": "float32 -> float16, round to nearest even",
            "normalisation": "mean 0.5,0.5,0.5 std 0.5,0.5,0.5"}
    write_safetensors(dst, tensors, meta)
    print(f"{dst}: {len(tensors)} tensors, {os.path.getsize(dst)} bytes")


if __name__ == "__main__":
    main()
