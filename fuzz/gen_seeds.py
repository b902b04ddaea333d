#!/usr/bin/python3
"""Generate the committed seed corpora under fuzz/corpus/ (except the model seeds, made by
fuzz/gen_model_seeds.c through the library). Run from the repository root:
    /usr/bin/python3 fuzz/gen_seeds.py
Seeds are small valid files (taken from tests/data or built here) plus hand-made broken
variants: truncations, bad magics, lying sizes, deep nesting."""
import gzip, json, os, shutil, struct, zlib

import numpy as np
import torch

C = "fuzz/corpus"


def put(target, name, data):
    d = os.path.join(C, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rd(p):
    with open(p, "rb") as f:
        return f.read()


# ---- image: the decoder fixtures plus truncated / damaged variants ---------------------
fx = "tests/data/image/fixtures"
for n in sorted(os.listdir(fx)):
    if n.endswith(".rgb"):
        continue
    b = rd(os.path.join(fx, n))
    put("image", n, b)
for n in ["rgb8.png", "rgb420.jpg", "core24.bmp", "p6.ppm", "rle8.bmp", "prog.jpg"]:
    b = rd(os.path.join(fx, n))
    put("image", "trunc_half_" + n, b[: len(b) // 2])
    put("image", "trunc_hdr_" + n, b[:20])
# dimension fields that lie
put("image", "pnm_huge.ppm", b"P6\n100000 100000\n255\n" + b"\0" * 64)
put("image", "pnm_maxval0.pgm", b"P5\n2 2\n0\n\0\0\0\0")
put("image", "pnm_maxval_big.pgm", b"P5\n2 2\n65536\n" + b"\0" * 8)
put("image", "pnm_comment.pbm", b"P1\n# c\n3 2\n1 0 1\n0 1 0\n")
bmp = bytearray(rd(os.path.join(fx, "core24.bmp")))
b2 = bytearray(bmp); struct.pack_into("<i", b2, 18, 0x7FFFFFFF); put("image", "bmp_wide.bmp", bytes(b2))
b2 = bytearray(bmp); struct.pack_into("<i", b2, 22, -0x80000000); put("image", "bmp_hmin.bmp", bytes(b2))
b2 = bytearray(bmp); struct.pack_into("<I", b2, 10, 0xFFFFFFF0); put("image", "bmp_off.bmp", bytes(b2))

# ---- pth: the small test checkpoints ------------------------------------------------------
for n in sorted(os.listdir("tests/data/pth")):
    if n.endswith(".pth"):
        put("pth", n, rd(os.path.join("tests/data/pth", n)))
vp = rd("tests/data/pth/params.pth")
put("pth", "trunc_half.pth", vp[: len(vp) // 2])
put("pth", "trunc_tail.pth", vp[:-30])
put("pth", "not_zip.pth", b"PK\x03\x04" + b"\0" * 40)

# pickles with deep nesting / many marks / memo abuse inside a valid torch zip
def torch_zip_with_pickle(pkl):
    import io, zipfile
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", b"3\n")
    return bio.getvalue()

put("pth", "deep_lists.pth", torch_zip_with_pickle(b"\x80\x02" + b"]" * 2000 + b"."))
put("pth", "many_marks.pth", torch_zip_with_pickle(b"\x80\x02" + b"(" * 2000 + b"."))
put("pth", "memo_far.pth", torch_zip_with_pickle(b"\x80\x02}r\xff\xff\xff\x7fh\xff."))
put("pth", "deep_dicts.pth", torch_zip_with_pickle(
    b"\x80\x02" + b"}(X\x01\x00\x00\x00a" * 200 + b"N" + b"u" * 200 + b"."))

# ---- safetensors: built from the tiny ViT of tests/data/pth, and broken variants -------------
def st_bytes(tensors, dtype="F32", meta=None):
    hdr, blobs, off = {}, [], 0
    for k, v in tensors.items():
        a = v.detach().cpu().numpy()
        if dtype == "F32":
            b = a.astype("<f4").tobytes()
        elif dtype == "F64":
            b = a.astype("<f8").tobytes()
        elif dtype == "F16":
            b = a.astype("<f2").tobytes()
        elif dtype == "BF16":
            b = (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        hdr[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta is not None:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

sd = torch.load("tests/data/pth/vit_plain.pth", map_location="cpu")
if not isinstance(sd, dict) or "cls_token" not in sd:
    raise SystemExit("unexpected layout of vit_plain.pth")
small = {k: sd[k] for k in list(sd)[:3]}
put("safetensors", "small_f32.safetensors", st_bytes(small, meta={"format": "pt"}))
put("safetensors", "small_f16.safetensors", st_bytes(small, "F16"))
put("safetensors", "small_bf16.safetensors", st_bytes(small, "BF16"))
put("safetensors", "small_f64.safetensors", st_bytes(small, "F64"))
put("safetensors", "vit_f32.safetensors", st_bytes(sd))
one = st_bytes({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)})
put("safetensors", "one.safetensors", one)
put("safetensors", "trunc.safetensors", one[:-5])
put("safetensors", "hdr_len_big.safetensors", struct.pack("<Q", 1 << 62) + one[8:])
bad = json.dumps({"x": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 24]}}).encode()
put("safetensors", "shape_ovf.safetensors", struct.pack("<Q", len(bad)) + bad + b"\0" * 24)
bad = json.dumps({"x": {"dtype": "I64", "shape": [3], "data_offsets": [0, 24]},
                  "y": {"dtype": "F32", "shape": [], "data_offsets": [24, 28]}}).encode()
put("safetensors", "int_and_scalar.safetensors", struct.pack("<Q", len(bad)) + bad + b"\0" * 28)
bad = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}).encode()
put("safetensors", "offs_reversed.safetensors", struct.pack("<Q", len(bad)) + bad + b"\0" * 8)

# ---- checkpoint: the tiny ViTs as .pth and .safetensors ---------------------------------------
for n in ["vit_plain.pth", "vit_teacher.pth", "state_dict.pth", "model_key.pth"]:
    put("checkpoint", n, rd(os.path.join("tests/data/pth", n)))
put("checkpoint", "vit_f32.safetensors", st_bytes(sd))
put("checkpoint", "vit_f16.safetensors", st_bytes(sd, "F16"))
put("checkpoint", "vit_bf16.safetensors", st_bytes(sd, "BF16"))
hf = {}
for k, v in sd.items():
    hf[k] = v
sd2 = dict(sd); sd2.pop("norm.weight", None)
put("checkpoint", "vit_missing_norm.safetensors", st_bytes(sd2))
sd3 = dict(sd); sd3["pos_embed"] = sd["pos_embed"][:, :3]
put("checkpoint", "vit_bad_pos.safetensors", st_bytes(sd3))

# DINOv2 layouts (issue 15) on the same tiny ViT: LayerScale and 2 register tokens, the
# giant's SwiGLU MLP (w12 [2H][D], w3 [D][H]), a Hugging Face Dinov2WithRegisters naming,
# and a register count that does not match its data
dv = dict(sd)
g15 = torch.Generator().manual_seed(15)
dv["register_tokens"] = torch.randn(1, 2, 8, generator=g15)
dv["mask_token"] = torch.zeros(1, 8)
for b in range(2):
    dv["blocks.%d.ls1.gamma" % b] = torch.full((8,), 0.5)
    dv["blocks.%d.ls2.gamma" % b] = torch.full((8,), 0.25)
put("checkpoint", "dinov2_reg.safetensors", st_bytes(dv))
sw = dict(dv)
for b in range(2):
    for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        sw.pop("blocks.%d.mlp.%s" % (b, k))
    sw["blocks.%d.mlp.w12.weight" % b] = torch.randn(16, 8, generator=g15)
    sw["blocks.%d.mlp.w12.bias" % b] = torch.randn(16, generator=g15)
    sw["blocks.%d.mlp.w3.weight" % b] = torch.randn(8, 8, generator=g15)
    sw["blocks.%d.mlp.w3.bias" % b] = torch.randn(8, generator=g15)
put("checkpoint", "dinov2_swiglu.safetensors", st_bytes(sw))
hfn = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
       "register_tokens": "embeddings.register_tokens", "mask_token": "embeddings.mask_token",
       "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
       "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
       "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
hsub = [("attn.proj.", "attention.output.dense."), ("ls1.gamma", "layer_scale1.lambda1"),
        ("ls2.gamma", "layer_scale2.lambda1"), ("mlp.w12.", "mlp.weights_in."),
        ("mlp.w3.", "mlp.weights_out.")]
hfd = {}
for k, v in sw.items():
    if k in hfn:
        hfd[hfn[k]] = v
        continue
    _, b, rest = k.split(".", 2)
    if rest.startswith("attn.qkv."):
        for i, q in enumerate(("query", "key", "value")):
            hfd["encoder.layer.%s.attention.attention.%s.%s" % (b, q, rest[9:])] = v.chunk(3)[i]
        continue
    for x, y in hsub:
        if rest.startswith(x):
            rest = y + rest[len(x):]
            break
    hfd["encoder.layer.%s.%s" % (b, rest)] = v
put("checkpoint", "dinov2_hf_reg_swiglu.safetensors", st_bytes(hfd))
bad = st_bytes(dv)
n = struct.unpack("<Q", bad[:8])[0]
h = json.loads(bad[8:8 + n])
h["register_tokens"]["shape"] = [1, 3, 8]  # 24 floats where the data holds 16
h = json.dumps(h).encode()
h += b" " * (-len(h) % 8)
put("checkpoint", "dinov2_reg_count.safetensors", struct.pack("<Q", len(h)) + h + bad[8 + n:])

# ---- dataset: byte 0 = format (0 cifar10, 1 cifar100, 2 mnist, 3 list), parts by "FUZ|" --
SEP = b"FUZ|"
rng = np.random.default_rng(5)

def cifar_rec(label_bytes):
    return bytes(label_bytes) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()

c10 = [cifar_rec([i % 10]) for i in range(6)]
put("dataset", "cifar10", bytes([0]) + SEP.join(c10 + [b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"]))
put("dataset", "cifar10_nometa", bytes([0]) + SEP.join(c10))
put("dataset", "cifar10_badlabel", bytes([0]) + SEP.join(c10[:5] + [cifar_rec([200])]))
put("dataset", "cifar10_trunc", bytes([0]) + SEP.join(c10[:5] + [c10[5][:-1]]))
c100 = [cifar_rec([3, 50]), cifar_rec([19, 99]) + cifar_rec([0, 0])]
names20 = b"".join(b"n%d\n" % i for i in range(20))
put("dataset", "cifar100", bytes([1]) + SEP.join(c100 + [names20]))
put("dataset", "cifar100_badfine", bytes([1]) + SEP.join([cifar_rec([3, 100]), c100[1]]))

def idx(dims, payload):
    return struct.pack(">I", 0x800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + payload

tr_i = idx([3, 4, 5], rng.integers(0, 256, 60, dtype=np.uint8).tobytes())
tr_l = idx([3], bytes([1, 2, 9]))
te_i = idx([2, 4, 5], rng.integers(0, 256, 40, dtype=np.uint8).tobytes())
te_l = idx([2], bytes([0, 7]))
put("dataset", "mnist_raw", bytes([2]) + SEP.join([tr_i, tr_l, te_i, te_l]))
gz = lambda b: gzip.compress(b, mtime=0)
put("dataset", "mnist_gz", bytes([2]) + SEP.join([gz(tr_i), gz(tr_l), gz(te_i), gz(te_l)]))
put("dataset", "mnist_gz_trunc", bytes([2]) + SEP.join([gz(tr_i)[:-6], tr_l, te_i, te_l]))
put("dataset", "mnist_count", bytes([2]) + SEP.join([tr_i, te_l, te_i, te_l]))
put("dataset", "mnist_huge", bytes([2]) + SEP.join([idx([0xFFFFFFFF, 0xFFFF, 0xFFFF], b""), tr_l, te_i, te_l]))
put("dataset", "list", bytes([3]) + SEP.join([
    b"a.png\n# comment\n\nb.png 0\n", b"a.png 0\nb.png 1 m.png\nm.png scratch -\n"
    b"b.png\tcrack\tm.png\n"]))
put("dataset", "list_tabs", bytes([3]) + SEP.join([b"a.png\t\t\n", b" b.png \t good \t - \r\n"]))
put("dataset", "list_bad", bytes([3]) + SEP.join([b"a.png 1\n", b"x.png 0\n"]))
put("dataset", "list_abs", bytes([3]) + SEP.join([b"/nonexistent/a.png\n", b"a.png 0 /x\n"]))
print("seeds written under", C)
