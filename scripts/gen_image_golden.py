#!/usr/bin/python3
"""Golden files for tests/test_image.c (run with /usr/bin/python3 from the project root).

Writes tests/data/image/:
  fixtures/*          tiny images in every supported variant (PNG, JPEG, BMP, PNM), written
                      by PIL where PIL can write the variant and by the small hand-written
                      encoders below otherwise (16-bit PNG, interlaced PNG, all PNG filter
                      types, BMP bitfields / RLE / OS2 headers, PNM variants)
  fixtures/*.rgb      the expected pixels: PIL's Image.open(f).convert("RGB") bytes, except
                      for 16-bit grey (PNG: high byte; PGM maxval > 255: round(v/maxval*255)),
                      where Pillow clips mode I to 255 and we deliberately differ (see image.c)
  fixtures.txt        "<file> <width> <height>" per fixture
  resize_src.rgb      a 97x61 synthetic RGB image (noise + gradients + edges)
  resize/*.rgb        PIL Image.resize of it with each filter to several sizes
  resize.txt          "<filter> <width> <height> <file>"
  prep/*.u8, prep.txt torchvision Resize/CenterCrop on the synthetic image for edge cases
                      (padding, odd crop offsets = banker's rounding, unchanged size) and
                      one float32 [3][S][S] ToTensor+Normalize output
  real/*.u8, real.txt uint8 224x224x3 results of the full torchvision pipeline on real images
                      from ../shared (skipped with a message when ../shared is absent)

torchvision 0.14 (python3-torchvision) is used when installed; otherwise its few relevant
lines (Resize size rule, CenterCrop with padding, ToTensor, Normalize) are replicated below.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = "tests/data/image"
FIX = os.path.join(OUT, "fixtures")

try:
    import torch
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF
    HAVE_TV = True
except Exception:  # pragma: no cover - fallback documented in the docstring
    HAVE_TV = False

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}

rng = np.random.RandomState(1234)
manifest = []


def save_fixture(name, data, expected):
    """data: file bytes; expected: uint8 array [h][w][3]."""
    with open(os.path.join(FIX, name), "wb") as f:
        f.write(data)
    exp = np.ascontiguousarray(expected, dtype=np.uint8)
    with open(os.path.join(FIX, name + ".rgb"), "wb") as f:
        f.write(exp.tobytes())
    manifest.append("%s %d %d" % (name, exp.shape[1], exp.shape[0]))


def pil_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ---------------------------------------------------------------------------------- PNG

def png_chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_pack_row(row, depth):
    """row: [w][C] ints -> bytes."""
    flat = row.reshape(-1)
    if depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in flat)
    if depth == 8:
        return bytes(int(v) for v in flat)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(flat), per):
        byte = 0
        for j in range(per):
            v = int(flat[i + j]) if i + j < len(flat) else 0
            byte |= v << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def png_filter(raw_rows, bpp):
    """Apply filter type (row index % 5) to each row, exercising every unfilter path."""
    out = bytearray()
    prev = bytes(len(raw_rows[0])) if raw_rows else b""
    for i, cur in enumerate(raw_rows):
        ft = i % 5
        f = bytearray()
        for x in range(len(cur)):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            f.append((cur[x] - p) & 255)
        out += bytes([ft]) + f
        prev = cur
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_encode(samples, ctype, depth, plte=None, trns=None, interlace=False):
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    data = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for xs, ys, dx, dy in passes:
        sub = samples[ys::dy, xs::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        rows = [png_pack_row(sub[y], depth) for y in range(sub.shape[0])]
        data += png_filter(rows, bpp)
    z = zlib.compress(data, 9)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(int(v) for v in np.asarray(plte).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    half = len(z) // 2  # two IDAT chunks
    out += png_chunk(b"IDAT", z[:half]) + png_chunk(b"IDAT", z[half:])
    out += png_chunk(b"IEND", b"")
    return out


def gen_png():
    w, h = 13, 7
    for depth in (1, 2, 4, 8, 16):
        s = rng.randint(0, 1 << depth, size=(h, w, 1))
        for il in (False, True):
            data = png_encode(s, 0, depth, interlace=il)
            if depth == 16:  # documented rule: high byte, not Pillow's clipping
                exp = np.repeat((s >> 8).astype(np.uint8), 3, axis=2)
            else:
                exp = pil_rgb(data)
            save_fixture("g%d%s.png" % (depth, "i" if il else ""), data, exp)
    # grey with tRNS (ignored by convert("RGB"))
    s = rng.randint(0, 256, size=(h, w, 1))
    data = png_encode(s, 0, 8, trns=struct.pack(">H", int(s[0, 0, 0])))
    save_fixture("g8t.png", data, pil_rgb(data))
    for depth in (8, 16):
        for il in (False, True):
            for ctype, ch, nm in ((4, 2, "ga"), (2, 3, "rgb"), (6, 4, "rgba")):
                s = rng.randint(0, 1 << depth, size=(h, w, ch))
                data = png_encode(s, ctype, depth, interlace=il)
                save_fixture("%s%d%s.png" % (nm, depth, "i" if il else ""), data, pil_rgb(data))
    s = rng.randint(0, 256, size=(h, w, 3))
    data = png_encode(s, 2, 8, trns=struct.pack(">HHH", *[int(v) for v in s[1, 1]]))
    save_fixture("rgb8t.png", data, pil_rgb(data))
    for depth in (1, 2, 4, 8):
        n = 1 << depth
        plte = rng.randint(0, 256, size=(n, 3))
        s = rng.randint(0, n, size=(h, w, 1))
        for il in (False, True):
            data = png_encode(s, 3, depth, plte=plte, interlace=il)
            save_fixture("p%d%s.png" % (depth, "i" if il else ""), data, pil_rgb(data))
        trns = bytes(int(v) for v in rng.randint(0, 256, size=max(1, n // 2)))
        data = png_encode(s, 3, depth, plte=plte, trns=trns)
        save_fixture("p%dt.png" % depth, data, pil_rgb(data))
    # PIL-written PNGs (Pillow's own encoder, default filters)
    arr = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    for mode in ("RGB", "L", "1", "RGBA", "P"):
        im = Image.fromarray(arr).convert(mode)
        b = io.BytesIO()
        im.save(b, "PNG")
        save_fixture("pil_%s.png" % mode.lower(), b.getvalue(), pil_rgb(b.getvalue()))


# --------------------------------------------------------------------------------- JPEG

def gen_jpeg():
    w, h = 37, 23
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 4 % 256], axis=2)
    arr = np.clip(base + rng.randint(-30, 30, size=(h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    for name, mode, kw in (("rgb420.jpg", "RGB", {}),
                           ("rgb444.jpg", "RGB", {"subsampling": 0}),
                           ("rgb422.jpg", "RGB", {"subsampling": 1}),
                           ("prog.jpg", "RGB", {"progressive": True}),
                           ("grey.jpg", "L", {}),
                           ("cmyk.jpg", "CMYK", {})):
        b = io.BytesIO()
        im.convert(mode).save(b, "JPEG", quality=90, **kw)
        save_fixture(name, b.getvalue(), pil_rgb(b.getvalue()))


# ---------------------------------------------------------------------------------- BMP

def bmp_file(w, h, bits, rows, palette=None, hsz=40, comp=0, masks=None, topdown=False,
             colors=0, pal_entry=4):
    """rows: list of raw row byte strings in *file* order (unpadded); palette: [(r,g,b)]."""
    if comp in (1, 2):
        pix = rows  # already an RLE stream
    else:
        stride = (w * bits + 31) // 32 * 4
        pix = b"".join(r + bytes(stride - len(r)) for r in rows)
    pal = b""
    if palette is not None:
        for r, g, b_ in palette:
            pal += bytes([b_, g, r]) + (b"\0" if pal_entry == 4 else b"")
    extra = b""
    if hsz == 12:
        hdr = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        hh = -h if topdown else h
        hdr = struct.pack("<IiiHHIIiiII", hsz, w, hh, 1, bits, comp, len(pix), 2835, 2835,
                          colors, 0)
        if hsz > 40:
            m = list(masks or (0, 0, 0)) + [0]
            hdr += struct.pack("<IIII", *m[:4])
            hdr += bytes(hsz - len(hdr))
        elif comp == 3:
            extra = struct.pack("<III", *masks)
    off = 14 + len(hdr) + len(extra) + len(pal)
    head = b"BM" + struct.pack("<IHHI", off + len(pix), 0, 0, off)
    return head + hdr + extra + pal + pix


def rle_encode(idx_rows, rle4):
    """Encode rows (file order) with encoded runs and even-length absolute runs."""
    out = bytearray()
    for row in idx_rows:
        x, n = 0, len(row)
        while x < n:
            r = 1
            while x + r < n and row[x + r] == row[x] and r < 255:
                r += 1
            if r >= 3 or n - x < 4:
                cnt = r if r >= 3 else 1
                v = row[x]
                out += bytes([cnt, (v << 4 | v) if rle4 else v])
                x += cnt
            else:  # absolute run of 4 pixels
                seg = row[x:x + 4]
                if rle4:
                    out += bytes([0, 4, seg[0] << 4 | seg[1], seg[2] << 4 | seg[3]])
                else:
                    out += bytes([0, 4]) + bytes(seg)
                x += 4
        out += b"\x00\x00"
    out += b"\x00\x01"
    return bytes(out)


def gen_bmp():
    w, h = 13, 7
    arr = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    for mode in ("RGB", "L", "1", "P"):
        b = io.BytesIO()
        Image.fromarray(arr).convert(mode).save(b, "BMP")
        save_fixture("pil_%s.bmp" % mode.lower(), b.getvalue(), pil_rgb(b.getvalue()))

    def bottom_up(rows):
        return rows[::-1]

    # palette depths
    for bits in (1, 4, 8):
        n = 1 << bits
        pal = [tuple(int(v) for v in rng.randint(0, 256, 3)) for _ in range(n)]
        idx = rng.randint(0, n, size=(h, w))
        rows = []
        for y in range(h):
            rows.append(png_pack_row(idx[y].reshape(-1, 1), bits))
        data = bmp_file(w, h, bits, bottom_up(rows), palette=pal)
        save_fixture("pal%d.bmp" % bits, data, pil_rgb(data))
        if bits == 8:  # OS/2 core header, BGR palette
            data = bmp_file(w, h, bits, bottom_up(rows), palette=pal, hsz=12, pal_entry=3)
            save_fixture("core8.bmp", data, pil_rgb(data))
            # fewer colours than the depth allows
            pal2 = pal[:200]
            idx2 = idx % 200
            rows2 = [bytes(int(v) for v in idx2[y]) for y in range(h)]
            data = bmp_file(w, h, 8, bottom_up(rows2), palette=pal2, colors=200)
            save_fixture("pal8c200.bmp", data, pil_rgb(data))
        if bits in (4, 8):
            # RLE: runs need repeated values
            ridx = np.repeat(rng.randint(0, n, size=(h, (w + 2) // 3)), 3, axis=1)[:, :w]
            ridx[:, 5:9] = rng.randint(0, n, size=(h, 4))  # a literal stretch
            stream = rle_encode([list(int(v) for v in r) for r in ridx[::-1]], bits == 4)
            data = bmp_file(w, h, bits, stream, palette=pal, comp=2 if bits == 4 else 1)
            try:
                exp = pil_rgb(data)
            except Exception as e:  # Pillow without this RLE variant: own reference
                print("note: Pillow cannot read RLE%d (%s); using palette lookup" % (bits, e))
                exp = np.array([[pal[v] for v in r] for r in ridx], dtype=np.uint8)
            save_fixture("rle%d.bmp" % bits, data, exp)
    # 24-bit top-down and core header
    rows = [bytes(arr[y, :, ::-1].reshape(-1)) for y in range(h)]
    data = bmp_file(w, h, 24, rows, topdown=True)
    save_fixture("td24.bmp", data, pil_rgb(data))
    data = bmp_file(w, h, 24, bottom_up(rows), hsz=12)
    save_fixture("core24.bmp", data, pil_rgb(data))
    # 16-bit 5-5-5 (BI_RGB) and 5-6-5 / 5-5-5 bitfields
    v16 = rng.randint(0, 65536, size=(h, w))
    rows = [b"".join(struct.pack("<H", int(v) & 0x7fff) for v in v16[y]) for y in range(h)]
    data = bmp_file(w, h, 16, bottom_up(rows))
    save_fixture("rgb555.bmp", data, pil_rgb(data))
    rows = [b"".join(struct.pack("<H", int(v)) for v in v16[y]) for y in range(h)]
    data = bmp_file(w, h, 16, bottom_up(rows), comp=3, masks=(0xF800, 0x7E0, 0x1F))
    save_fixture("bf565.bmp", data, pil_rgb(data))
    data = bmp_file(w, h, 16, bottom_up(rows), comp=3, masks=(0x7C00, 0x3E0, 0x1F), hsz=108)
    save_fixture("bf555v4.bmp", data, pil_rgb(data))
    # 32-bit: BI_RGB (BGRX), bitfields BGRA in a V5 header, XBGR in a 40-byte header
    v32 = rng.randint(0, 256, size=(h, w, 4)).astype(np.uint8)
    rows = [bytes(v32[y].reshape(-1)) for y in range(h)]
    data = bmp_file(w, h, 32, bottom_up(rows))
    save_fixture("rgb32.bmp", data, pil_rgb(data))
    data = bmp_file(w, h, 32, bottom_up(rows), comp=3, hsz=124,
                    masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000))
    save_fixture("bf32v5.bmp", data, pil_rgb(data))
    data = bmp_file(w, h, 32, bottom_up(rows), comp=3, masks=(0xFF000000, 0xFF0000, 0xFF00))
    save_fixture("bf32xbgr.bmp", data, pil_rgb(data))


# ---------------------------------------------------------------------------------- PNM

def gen_pnm():
    w, h = 13, 7
    bits = rng.randint(0, 2, size=(h, w))
    plain = "P1\n# a comment\n%d %d\n" % (w, h)
    plain += "\n".join("".join(str(int(v)) for v in r) for r in bits) + "\n"  # no separators
    data = plain.encode()
    save_fixture("p1.pbm", data, pil_rgb(data))
    rowsb = b""
    for r in bits:
        rowsb += png_pack_row(r.reshape(-1, 1), 1)
    data = b"P4\n%d %d\n" % (w, h) + rowsb
    save_fixture("p4.pbm", data, pil_rgb(data))
    g = rng.randint(0, 101, size=(h, w))
    data = ("P2\n%d %d\n# maxval next\n100\n" % (w, h) +
            "\n".join(" ".join(str(int(v)) for v in r) for r in g) + "\n").encode()
    save_fixture("p2.pgm", data, pil_rgb(data))
    c = rng.randint(0, 256, size=(h, w, 3))
    data = ("P3 %d %d 255\n" % (w, h) + " ".join(str(int(v)) for v in c.reshape(-1)) + "\n").encode()
    save_fixture("p3.ppm", data, pil_rgb(data))
    g8 = rng.randint(0, 256, size=(h, w))
    data = b"P5\n#c\n%d %d\n255\n" % (w, h) + bytes(int(v) for v in g8.reshape(-1))
    save_fixture("p5.pgm", data, pil_rgb(data))
    g16 = rng.randint(0, 65536, size=(h, w))
    data = b"P5 %d %d 65535\n" % (w, h) + b"".join(struct.pack(">H", int(v)) for v in g16.reshape(-1))
    exp = np.array([[min(255, round(int(v) / 65535 * 255))] * 3 for v in g16.reshape(-1)],
                   dtype=np.uint8).reshape(h, w, 3)  # our rule (Pillow: mode I, clipped)
    save_fixture("p5_16.pgm", data, exp)
    g31 = rng.randint(0, 32, size=(h, w))
    data = b"P5 %d %d 31\n" % (w, h) + bytes(int(v) for v in g31.reshape(-1))
    save_fixture("p5_31.pgm", data, pil_rgb(data))
    data = b"P6\n%d %d\n255\n" % (w, h) + bytes(int(v) for v in c.reshape(-1))
    save_fixture("p6.ppm", data, pil_rgb(data))
    c1k = rng.randint(0, 1001, size=(h, w, 3))
    data = b"P6\n%d %d\n1000\n" % (w, h) + b"".join(struct.pack(">H", int(v)) for v in c1k.reshape(-1))
    save_fixture("p6_1000.ppm", data, pil_rgb(data))


# ------------------------------------------------------------------------------- resize

def synth(w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([xx / (w - 1) * 255, yy / (h - 1) * 255,
                    128 + 127 * np.sin(xx / 3.0 + yy / 5.0)], axis=2)
    img += rng.randint(-40, 41, size=(h, w, 3))
    img[h // 3:h // 2, :, :] = 255  # hard edges: overshoot for bicubic/lanczos
    img[:, w // 4:w // 4 + 2, :] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


RESIZE_SIZES = [(40, 25), (64, 64), (120, 77), (97, 30), (33, 61), (200, 13), (7, 5)]


def gen_resize():
    src = synth(97, 61)
    with open(os.path.join(OUT, "resize_src.rgb"), "wb") as f:
        f.write(src.tobytes())
    os.makedirs(os.path.join(OUT, "resize"), exist_ok=True)
    lines = []
    im = Image.fromarray(src)
    for fname, filt in FILTERS.items():
        for w, h in RESIZE_SIZES:
            out = np.asarray(im.resize((w, h), filt))
            fn = "resize/%s_%dx%d.rgb" % (fname, w, h)
            with open(os.path.join(OUT, fn), "wb") as f:
                f.write(out.tobytes())
            lines.append("%s %d %d %s" % (fname, w, h, fn))
    with open(os.path.join(OUT, "resize.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return src


# ---------------------------------------------------------------------- torchvision path

TV_MODES = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS",
            "nearest": "NEAREST"}


def tv_u8(im, resize, crop, filt):
    """PIL image -> uint8 [S][S][3] after Resize(resize) and CenterCrop(crop)."""
    if HAVE_TV:
        mode = getattr(T.InterpolationMode, TV_MODES[filt])
        if resize:
            im = T.Resize(resize, interpolation=mode)(im)
        if crop:
            im = T.CenterCrop(crop)(im)
        return np.asarray(im)
    # fallback: torchvision 0.14's rules, replicated
    w, h = im.size
    if resize:
        short, long_ = (w, h) if w <= h else (h, w)
        nl = int(resize * long_ / short)
        nw, nh = (resize, nl) if w <= h else (nl, resize)
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), FILTERS[filt])
    if crop:
        w, h = im.size
        if crop > w or crop > h:
            pl = (crop - w) // 2 if crop > w else 0
            pt = (crop - h) // 2 if crop > h else 0
            canvas = Image.new("RGB", (max(w, crop), max(h, crop)))
            canvas.paste(im, (pl, pt))
            im = canvas
            w, h = im.size
        top = int(round((h - crop) / 2.0))
        left = int(round((w - crop) / 2.0))
        im = im.crop((left, top, left + crop, top + crop))
    return np.asarray(im)


def tv_float(im, resize, crop, filt, mean, std):
    u8 = tv_u8(im, resize, crop, filt)
    ref = ((u8.astype(np.float32) / np.float32(255)) - np.array(mean, np.float32)) / \
        np.array(std, np.float32)
    ref = np.ascontiguousarray(ref.transpose(2, 0, 1))
    if HAVE_TV:
        mode = getattr(T.InterpolationMode, TV_MODES[filt])
        t = [T.Resize(resize, interpolation=mode)] if resize else []
        t += [T.CenterCrop(crop)] if crop else []
        t += [T.ToTensor(), T.Normalize(mean, std)]
        x = T.Compose(t)(im).numpy()
        assert np.array_equal(x, ref), "torchvision float differs from the float32 formula"
    return u8, ref


IMNET_MEAN, IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gen_prep(src):
    os.makedirs(os.path.join(OUT, "prep"), exist_ok=True)
    im = Image.fromarray(src)  # 97x61
    cases = [  # name, resize, crop, pad_to, filter
        ("pad_w", 64, 80, 0, "bilinear"),      # 102x64 -> crop 80: crop width, pad height
        ("odd", 0, 50, 0, "bilinear"),         # offsets 23.5 -> 24, 5.5 -> 6 (half to even)
        ("odd2", 0, 58, 0, "bilinear"),        # offsets 19.5 -> 20, 1.5 -> 2
        ("same", 61, 40, 0, "bicubic"),        # short side already 61: no resampling
        ("pad_both", 30, 64, 0, "lanczos"),    # 47x30 -> padded on both sides
        ("padto", 45, 0, 96, "lanczos"),       # 71x45 centred on a 96 canvas
        ("tall", 50, 44, 0, "nearest"),        # transposed image below
    ]
    lines = []
    for name, resize, crop, pad_to, filt in cases:
        src_im = im.transpose(Image.TRANSPOSE) if name == "tall" else im
        # pad_to == CenterCrop(pad_to) for an image smaller in both sides: same floor split
        u8 = tv_u8(src_im, resize, crop or pad_to, filt)
        fn = "prep/%s.u8" % name
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(np.ascontiguousarray(u8).tobytes())
        lines.append("%s %d %d %d %s %d %s" % (name, resize, crop, pad_to, filt, u8.shape[0], fn))
    # one float output: ImageNet normalisation
    _, ref = tv_float(im, 64, 80, "bilinear", IMNET_MEAN, IMNET_STD)
    with open(os.path.join(OUT, "prep/pad_w.f32"), "wb") as f:
        f.write(ref.astype("<f4").tobytes())
    with open(os.path.join(OUT, "prep.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def gen_real():
    shared = os.environ.get("UF_SHARED", "../shared")
    if not os.path.exists(os.path.join(shared, "README.md")):
        print("SKIP real-image goldens: %s absent" % shared)
        return
    os.makedirs(os.path.join(OUT, "real"), exist_ok=True)
    files = ["data/imagenet_samples/n01514668_10054.JPEG",
             "data/imagenet_samples/n01687978_10071.JPEG",
             "data/imagenet_samples/n02113978_10037.JPEG",
             "data/mvtec_ad/bottle/test/broken_large/000.png"]
    lines = []
    for rel in files:
        im = Image.open(os.path.join(shared, rel)).convert("RGB")
        for resize, filt, mean, std in ((256, "bilinear", IMNET_MEAN, IMNET_STD),
                                        (248, "bicubic", (0.5,) * 3, (0.5,) * 3)):
            u8, ref = tv_float(im, resize, 224, filt, mean, std)
            base = os.path.basename(rel).split(".")[0]
            fn = "real/%s_%s%d.u8" % (base, filt, resize)
            with open(os.path.join(OUT, fn), "wb") as f:
                f.write(np.ascontiguousarray(u8).tobytes())
            r64 = ref.astype(np.float64)
            lines.append("%s %d %s %.9g %.9g %.9g %.9g %.9g %.9g %s %.17g %.17g" % (
                rel, resize, filt, *mean, *std, fn, r64.sum(), (r64 * r64).sum()))
    with open(os.path.join(OUT, "real.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    os.makedirs(FIX, exist_ok=True)
    print("torchvision:", "yes" if HAVE_TV else "no (replicated rules)")
    gen_png()
    gen_jpeg()
    gen_bmp()
    gen_pnm()
    with open(os.path.join(OUT, "fixtures.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    src = gen_resize()
    gen_prep(src)
    gen_real()
    total = 0
    for root, _, fs in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, x)) for x in fs)
    print("%d fixtures, %d bytes in %s" % (len(manifest), total, OUT))


if __name__ == "__main__":
    sys.exit(main())
