#!/usr/bin/env python3
"""Generate the small dataset fixtures of tests/test_dataset.c under tests/data/dataset/.

One tiny tree per layout uf_dataset_open reads (MVTec AD, BTAD, MTD, generic folder, list
files, ImageNet-style class folders), tiny CIFAR-10/100 binary batches and MNIST idx files
(plain and gzip'ed), plus broken variants whose expected error status the test checks
(truncated CIFAR batch, idx with a wrong magic, image/label count mismatch, mask of the
wrong size, category without train/, ...).

Images are 8x6 (width x height) unless said otherwise; their pixels are not checked (only
sizes), except masks, whose values straddle the 128 threshold on purpose. CIFAR and idx
pixels follow integer formulas that the C test recomputes:
    CIFAR byte i (0..3071, planar R,G,B) of record r in file number f:
        (37*f + 11*r + 3*i + 85*(i >> 10)) & 255   (i >> 10 is the channel)
    idx   byte i of image r in file number f:                           (29*f + 13*r + 7*i) & 255
(file numbers: CIFAR-10 data_batch_k -> k-1, test_batch -> 5; CIFAR-100 train -> 0,
test -> 1; idx train -> 0, t10k -> 1).

Everything is deterministic (gzip mtime 0), so rerunning gives identical files. Run with
/usr/bin/python3 scripts/gen_dataset_fixtures.py from the repository root.
"""
import gzip
import os
import shutil
import struct

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "dataset")
W, H = 8, 6


def mkdir(*parts):
    p = os.path.join(OUT, *parts)
    os.makedirs(p, exist_ok=True)
    return p


def write(path_parts, data, mode="wb"):
    p = os.path.join(OUT, *path_parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, mode) as f:
        f.write(data)


def image(path_parts, seed, size=(W, H), fmt=None, mode="RGB"):
    """A small image with seeded content; format from the extension unless fmt is given."""
    p = os.path.join(OUT, *path_parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    rng = np.random.default_rng(seed)
    ch = 3 if mode == "RGB" else 1
    a = rng.integers(0, 256, size=(size[1], size[0], ch), dtype=np.uint8)
    if ch == 1:
        a = a[:, :, 0]
    Image.fromarray(a, mode).save(p, format=fmt)


def mask(path_parts, size=(W, H), mode="L", fmt=None):
    """A mask whose values straddle 128: column x holds [0, 127, 128, 255, 200, 1, 0, 255][x % 8]
    on the top half (rows < h/2) and 0 below. In RGB mode only the red channel is set."""
    p = os.path.join(OUT, *path_parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    vals = [0, 127, 128, 255, 200, 1, 0, 255]
    a = np.zeros((size[1], size[0]), dtype=np.uint8)
    for x in range(size[0]):
        a[: size[1] // 2, x] = vals[x % 8]
    if mode == "RGB":
        rgb = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        rgb[:, :, 0] = a
        Image.fromarray(rgb, "RGB").save(p, format=fmt)
    else:
        Image.fromarray(a, "L").save(p, format=fmt)


def gen_mvtec():
    # two categories, a stray folder (no train/ or test/) and a hidden one, both skipped
    write(["mvtec", "LICENSE.txt"], b"fixture\n")
    write(["mvtec", "stray", "notes.txt"], b"not a category\n")
    write(["mvtec", ".hidden", "train", "good", "x.txt"], b"hidden\n")
    for i in range(3):
        image(["mvtec", "cat_a", "train", "good", "%03d.png" % i], 100 + i)
    write(["mvtec", "cat_a", "train", "good", "notes.txt"], b"ignored\n")
    write(["mvtec", "cat_a", "train", "good", ".DS_Store"], b"ignored\n")
    for i in range(2):
        image(["mvtec", "cat_a", "test", "good", "%03d.png" % i], 110 + i)
        image(["mvtec", "cat_a", "test", "crack", "%03d.png" % i], 120 + i)
        mask(["mvtec", "cat_a", "ground_truth", "crack", "%03d_mask.png" % i])
    image(["mvtec", "cat_a", "test", "hole", "000.PNG"], 130, fmt="PNG")
    mask(["mvtec", "cat_a", "ground_truth", "hole", "000_mask.png"])
    write(["mvtec", "cat_a", "test", "empty", "readme.txt"], b"no images here\n")
    for i in range(2):
        image(["mvtec", "cat_b", "train", "good", "%03d.jpg" % i], 140 + i)
        image(["mvtec", "cat_b", "test", "scratch", "%03d.jpg" % i], 150 + i)
    image(["mvtec", "cat_b", "test", "good", "000.jpg"], 160)
    mask(["mvtec", "cat_b", "ground_truth", "scratch", "000_mask.png"])  # 001 has none


def gen_btad():
    # BTAD: train/ok, test/ok (normal), test/ko; masks named like the image
    for i in range(2):
        image(["btad", "01", "train", "ok", "%04d.bmp" % i], 200 + i, fmt="BMP")
        image(["btad", "01", "test", "ko", "%04d.bmp" % i], 210 + i, fmt="BMP")
        mask(["btad", "01", "ground_truth", "ko", "%04d.png" % i])
    image(["btad", "01", "test", "ok", "0000.bmp"], 220, fmt="BMP")
    image(["btad", "03", "train", "ok", "0000.bmp"], 230, fmt="BMP")
    image(["btad", "03", "test", "ok", "0000.bmp"], 231, fmt="BMP")
    image(["btad", "03", "test", "ko", "0005.bmp"], 232, fmt="BMP")
    mask(["btad", "03", "ground_truth", "ko", "0005.bmp"], mode="RGB", fmt="BMP")


def gen_mtd():
    # names whose bytewise order differs from a natural sort
    free = ["exp1_num_10", "exp1_num_9", "exp0_num_5", "Exp2", "exp1_num_100", "a", "b"]
    for k, n in enumerate(free):
        image(["mtd", "MT_Free", "Imgs", n + ".jpg"], 300 + k, mode="L", fmt="JPEG")
        write(["mtd", "MT_Free", "Imgs", n + ".png"], b"")  # replaced below
        Image.fromarray(np.zeros((H, W), np.uint8), "L").save(
            os.path.join(OUT, "mtd", "MT_Free", "Imgs", n + ".png"))
    for k, n in enumerate(["x1", "x2"]):
        image(["mtd", "MT_Blowhole", "Imgs", n + ".jpg"], 320 + k, mode="L", fmt="JPEG")
        mask(["mtd", "MT_Blowhole", "Imgs", n + ".png"])
    image(["mtd", "MT_Crack", "Imgs", "y.jpg"], 330, mode="L", fmt="JPEG")
    mask(["mtd", "MT_Crack", "Imgs", "y.png"])
    write(["mtd", "README.txt"], b"fixture\n")
    write(["mtd", "other", "notes.txt"], b"not MT_\n")


def gen_folder():
    for i in range(3):
        image(["folder", "train", "n%d.png" % i], 400 + i)  # images directly in train/
    image(["folder", "test", "good", "g.png"], 410)
    image(["folder", "test", "defect", "d1.png"], 411)
    image(["folder", "test", "defect", "d2.png"], 412)
    mask(["folder", "ground_truth", "defect", "d1_mask.png"])
    mask(["folder", "ground_truth", "defect", "d2.bmp"], fmt="BMP")  # "<stem>.<ext>" form


def gen_list():
    for k, n in enumerate(["a", "b", "c", "d", "e", "f", "with space"]):
        image(["list", "imgs", n + ".png"], 500 + k)
    mask(["list", "imgs", "m.png"])
    write(["list", "train.txt"], b"# training images: labels optional\n\nimgs/a.png\n  imgs/b.png\t0\n")
    write(["list", "test.txt"],
          b"# path label [mask]\n"
          b"imgs/c.png 0\n"
          b"imgs/with space.png\tcrack\timgs/m.png\n"
          b"imgs/d.png 1 -\r\n"
          b"   # an indented comment\n"
          b"imgs/e.png good\n"
          b"imgs/f.png crack imgs/m.png")  # no final newline


def gen_imagefolder():
    image(["imagefolder", "train", "cat", "1.jpg"], 600, fmt="JPEG")
    image(["imagefolder", "train", "cat", "2.jpg"], 601, fmt="JPEG")
    image(["imagefolder", "train", "dog", "1.png"], 602)
    image(["imagefolder", "train", "emu", "1.png"], 603)
    image(["imagefolder", "val", "cat", "9.png"], 604)
    image(["imagefolder", "val", "dog", "7.png"], 605)
    image(["imagefolder", "val", "dog", "8.png"], 606)


def cifar_bytes(fileno, labels, hundred):
    out = bytearray()
    i = np.arange(3072)
    for r, lab in enumerate(labels):
        if hundred:
            out += bytes(lab)  # (coarse, fine)
        else:
            out += bytes([lab])
        out += (((37 * fileno + 11 * r + 3 * i + 85 * (i >> 10)) & 255).astype(np.uint8)).tobytes()
    return bytes(out)


CIFAR10_TRAIN = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # two records per batch
CIFAR10_TEST = [3, 3, 0, 9, 5]
CIFAR100_TRAIN = [(0, 4), (19, 99), (0, 30), (7, 6), (19, 0), (3, 3)]
CIFAR100_TEST = [(19, 1), (0, 72), (5, 5), (0, 4)]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def gen_cifar(base, *, truncate_test=0, bad_label=False, skip_batch=None, meta_names=None,
              small=False):
    """small: one record per file (the broken variants, to keep the fixtures small)."""
    d = [base, "cifar-10-batches-bin"]
    for k in range(5):
        if k + 1 == skip_batch:
            continue
        labels = list(CIFAR10_TRAIN[k][:1] if small else CIFAR10_TRAIN[k])
        if bad_label and k == 2:
            labels[-1] = 10
        write(d + ["data_batch_%d.bin" % (k + 1)], cifar_bytes(k, labels, False))
    t = cifar_bytes(5, CIFAR10_TEST[:1] if small else CIFAR10_TEST, False)
    write(d + ["test_batch.bin"], t[: len(t) - truncate_test])
    names = CIFAR10_NAMES if meta_names is None else meta_names
    write(d + ["batches.meta.txt"], ("\n".join(names) + "\n\n").encode())


def gen_cifar100(base, *, bad_coarse=False):
    tr = list(CIFAR100_TRAIN)
    if bad_coarse:
        tr[1] = (20, 99)
    write([base, "train.bin"], cifar_bytes(0, tr, True))
    write([base, "test.bin"], cifar_bytes(1, CIFAR100_TEST, True))
    coarse = ["aquatic mammals", "fish", "flowers", "food containers", "fruit and vegetables",
              "household electrical devices", "household furniture", "insects",
              "large carnivores", "large man-made outdoor things",
              "large natural outdoor scenes", "large omnivores and herbivores",
              "medium-sized mammals", "non-insect invertebrates", "people", "reptiles",
              "small mammals", "trees", "vehicles 1", "vehicles 2"]
    write([base, "coarse_label_names.txt"], ("\n".join(coarse) + "\n").encode())


MNIST_ROWS, MNIST_COLS = 4, 5
MNIST_TRAIN = [i % 10 for i in range(12)]
MNIST_TEST = [3, 3, 0, 9, 1, 2]


def idx_images(fileno, n, rows=MNIST_ROWS, cols=MNIST_COLS, magic=0x00000803, extra=b""):
    i = np.arange(rows * cols)
    out = bytearray(struct.pack(">IIII", magic, n, rows, cols))
    for r in range(n):
        out += (((29 * fileno + 13 * r + 7 * i) & 255).astype(np.uint8)).tobytes()
    return bytes(out) + extra


def idx_labels(labels, magic=0x00000801):
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def gz(b):
    return gzip.compress(b, mtime=0)


def gen_mnist(parts, *, use_gz=False, images=None, labels=None):
    """Write the four idx files; images/labels override single files by name."""
    files = {
        "train-images-idx3-ubyte": idx_images(0, len(MNIST_TRAIN)),
        "train-labels-idx1-ubyte": idx_labels(MNIST_TRAIN),
        "t10k-images-idx3-ubyte": idx_images(1, len(MNIST_TEST)),
        "t10k-labels-idx1-ubyte": idx_labels(MNIST_TEST),
    }
    files.update(images or {})
    files.update(labels or {})
    for name, data in files.items():
        if use_gz:
            write(parts + [name + ".gz"], gz(data))
        else:
            write(parts + [name], data)


def gen_broken():
    b = "broken"
    # CIFAR
    gen_cifar(os.path.join(b, "cifar_trunc"), truncate_test=100, small=True)
    gen_cifar(os.path.join(b, "cifar_label"), bad_label=True, small=True)
    gen_cifar(os.path.join(b, "cifar_missing"), skip_batch=3, small=True)
    gen_cifar(os.path.join(b, "cifar_meta"), meta_names=CIFAR10_NAMES[:9], small=True)
    gen_cifar(os.path.join(b, "cifar_meta_long"), meta_names=CIFAR10_NAMES + ["extra"], small=True)
    gen_cifar100(os.path.join(b, "cifar100_label"), bad_coarse=True)
    # idx
    gen_mnist([b, "idx_magic"], images={"train-images-idx3-ubyte": idx_images(0, 12, magic=0x00000804)})
    gen_mnist([b, "idx_count"], labels={"train-labels-idx1-ubyte": idx_labels(MNIST_TRAIN[:11])})
    gen_mnist([b, "idx_extra"], images={"t10k-images-idx3-ubyte": idx_images(1, 6, extra=b"\0")})
    gen_mnist([b, "idx_short"], images={"t10k-images-idx3-ubyte": idx_images(1, 6)[:-1]})
    gen_mnist([b, "idx_label_range"], labels={"t10k-labels-idx1-ubyte": idx_labels([3, 3, 10, 9, 1, 2])})
    gen_mnist([b, "idx_dims"], images={"t10k-images-idx3-ubyte": idx_images(1, 6, rows=5, cols=4)})
    # gzip: truncated stream; inflates beyond its header; header claims far more than the file
    gen_mnist([b, "idx_gz_trunc"], use_gz=True)
    p = os.path.join(OUT, b, "idx_gz_trunc", "train-images-idx3-ubyte.gz")
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    gen_mnist([b, "idx_gz_trailer"], use_gz=True)  # all data there, CRC/size trailer cut
    p = os.path.join(OUT, b, "idx_gz_trailer", "t10k-labels-idx1-ubyte.gz")
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-4])
    gen_mnist([b, "idx_gz_extra"], use_gz=True,
              images={"train-images-idx3-ubyte": idx_images(0, 12, extra=b"\1\2\3")})
    bomb = struct.pack(">IIII", 0x00000803, 1000000, 28, 28)  # 784 MB declared, 16 bytes given
    gen_mnist([b, "idx_gz_bomb"], use_gz=True, images={"train-images-idx3-ubyte": bomb})
    gen_mnist([b, "idx_gz_garbage"], use_gz=False)
    g = bytearray(gz(idx_images(0, 12)))
    g[len(g) // 2] ^= 0xFF  # corrupt deflate data
    os.remove(os.path.join(OUT, b, "idx_gz_garbage", "train-images-idx3-ubyte"))
    write([b, "idx_gz_garbage", "train-images-idx3-ubyte.gz"], bytes(g))
    # layouts
    image([b, "mask_size", "train", "good", "n.png"], 700)
    image([b, "mask_size", "test", "bad", "x.png"], 701)
    mask([b, "mask_size", "ground_truth", "bad", "x_mask.png"], size=(W - 1, H))
    image([b, "no_train", "cat_x", "test", "good", "000.png"], 710)
    image([b, "no_test_images", "train", "good", "000.png"], 720)
    write([b, "no_test_images", "test", "good", "readme.txt"], b"no images\n")
    image([b, "test_direct", "train", "good", "000.png"], 730)
    image([b, "test_direct", "test", "000.png"], 731)
    image([b, "no_train_images", "train", "good", "000.tif"], 740, fmt="TIFF")
    image([b, "no_train_images", "test", "good", "000.png"], 741)
    for name, test in [("list_fields", b"a.png 1 a.png extra\n"),
                       ("list_missing", b"a.png 0\nnope.png 1\n"),
                       ("list_nolabel", b"a.png\n"),
                       ("list_train_anom", b"a.png 0\n")]:
        image([b, name, "a.png"], 750)
        write([b, name, "train.txt"], b"a.png 1\n" if name == "list_train_anom" else b"a.png\n")
        write([b, name, "test.txt"], test)
    image([b, "imagefolder_val", "train", "cat", "1.png"], 760)
    image([b, "imagefolder_val", "val", "cow", "1.png"], 761)
    image([b, "mtd_noimgs", "MT_Free", "Imgs", "a.jpg"], 770, fmt="JPEG")
    image([b, "mtd_noimgs", "MT_Free", "Imgs", "b.jpg"], 771, fmt="JPEG")
    write([b, "mtd_noimgs", "MT_Crack", "readme.txt"], b"no Imgs folder\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    gen_mvtec()
    gen_btad()
    gen_mtd()
    gen_folder()
    gen_list()
    gen_imagefolder()
    gen_cifar("cifar10")             # in cifar10/cifar-10-batches-bin/
    gen_cifar100("cifar100")         # directly in cifar100/
    gen_mnist(["mnist"])             # plain files in mnist/
    gen_mnist(["fashion", "raw"], use_gz=True)  # .gz in fashion/raw/
    gen_broken()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    nfiles = sum(len(fs) for _, _, fs in os.walk(OUT))
    print("wrote %d files, %d bytes under %s" % (nfiles, total, os.path.relpath(OUT)))


if __name__ == "__main__":
    main()
