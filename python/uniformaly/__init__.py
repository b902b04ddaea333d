"""uniformaly - visual anomaly detection with Vision Transformers on CPU, from Python.

Why this package: notebooks and pipelines are Python, and going through the CLI costs a
process start and a model load per call. This is a thin ctypes layer over the shared
library libuniformaly.so (nothing is compiled at install time): numpy arrays in and out,
library errors raised as uniformaly.Error with the library's message, and the GIL released
during every library call, so several threads score one model at once (each thread gets
its own scorer).

    import uniformaly
    m = uniformaly.fit(images="bottle/train/good")   # the bundled ViT-Tiny/16, mean/std 0.5
    m = uniformaly.fit("vit.safetensors", "bottle/train/good", mean=(.5, .5, .5), std=(.5, .5, .5))
    m.save("bottle.ufm")
    m = uniformaly.Model.load("bottle.ufm")
    r = m.predict("part.png")          # or an HxWx3 uint8 array, bytes, or a list of them
    r.score, r.anomalous, r.map        # float, bool/None, float32 [H][W]
    ev = uniformaly.evaluate("mvtec", "mvtec_ad", categories=["bottle"])   # uf_eval_run
    ev.mean["image_auroc"], ev["bottle"].scores  # figures, per-image scores
"""
import ctypes
import os
import threading
from ctypes import POINTER, byref, c_float, c_int, c_uint8, c_uint64

import numpy as np

from . import _native
from ._native import lib

__all__ = ["Error", "Backbone", "Model", "Result", "fit", "evaluate", "Evaluation", "EvalRow",
           "bundled_backbone", "load_image", "list_images", "draw_shots", "auroc",
           "set_threads", "get_threads", "version", "__version__"]

__version__ = "2.0.0"


class Error(Exception):
    """A library call failed: str(e) is uf_errmsg(); e.status the uf_status code and
    e.status_name its name ("format error", ...)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = lib.uf_status_str(status).decode()


def _check(status):
    if status != 0:
        # uf_errmsg is per thread; ctypes runs the call on this very thread
        raise Error(status, lib.uf_errmsg().decode("utf-8", "replace"))


def version():
    """The linked library's version string, e.g. "0.1.0"."""
    return lib.uf_version().decode()


if lib.uf_version_number() // 10000 != _native.SONAME_MAJOR:
    raise ImportError("uniformaly: the loaded library is version %s, this package needs %d.x"
                      % (version(), _native.SONAME_MAJOR))


def set_threads(n):
    """Bound the library's compute threads (0: the default). Call before scoring from many
    threads (set_threads(1) keeps each call on its own thread)."""
    lib.uf_set_threads(int(n))


def get_threads():
    return lib.uf_get_threads()


# ---- images --------------------------------------------------------------------------

class _Owned:
    """A uf_image made by the library (freed with it) and a numpy view of its pixels."""

    def __init__(self, ptr):
        self.ptr = ptr
        im = ptr.contents
        self.array = np.ctypeslib.as_array(im.rgb, shape=(im.height, im.width, 3))

    def __del__(self):
        if getattr(self, "ptr", None):
            lib.uf_image_free(self.ptr)
            self.ptr = None


def _decode(x):
    """x (a path, bytes, or an HxWx3 / HxW uint8 array) -> (uf_image pointer, keepalive)."""
    out = POINTER(_native.Image)()
    if isinstance(x, (str, os.PathLike)):
        _check(lib.uf_image_load(os.fsencode(x), byref(out)))
        o = _Owned(out)
        return out, o
    if isinstance(x, (bytes, bytearray, memoryview)):
        buf = bytes(x)
        _check(lib.uf_image_decode(buf, len(buf), byref(out)))
        o = _Owned(out)
        return out, o
    a = np.asarray(x)
    if a.dtype != np.uint8:
        raise TypeError("uniformaly: images must be uint8 arrays, got %s" % a.dtype)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError("uniformaly: an image array must be HxWx3 (RGB) or HxW (grey), got "
                         "shape %s" % (a.shape,))
    a = np.ascontiguousarray(a)
    im = _native.Image(a.shape[1], a.shape[0], a.ctypes.data_as(POINTER(c_uint8)))
    return ctypes.pointer(im), (a, im)  # the library borrows the array's pixels


def load_image(path):
    """Decode an image file (PNG, JPEG, BMP, PNM) as the library does (Pillow-identical
    RGB): a new HxWx3 uint8 array."""
    _, o = _decode(path)
    return o.array.copy()


def list_images(folder):
    """The image files under folder, recursively (hidden names skipped), as the CLI lists
    them: names the library takes as images, sorted bytewise by path."""
    out = []
    for d, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            p = os.path.join(d, f)
            if not f.startswith(".") and os.path.isfile(p) and lib.uf_is_image_name(os.fsencode(f)):
                out.append(p)
    return sorted(out, key=os.fsencode)


def _expand(images):
    """fit's images argument -> a list of items (paths, arrays, bytes)."""
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim <= 3):
        images = [images]
    out = []
    for x in images:
        if isinstance(x, (str, os.PathLike)) and os.path.isdir(x):
            found = list_images(x)
            if not found:
                raise Error(2, "%s: no images found in this directory" % os.fspath(x))
            out.extend(found)
        else:
            out.append(x)
    return out


def draw_shots(n, k, seed):
    """The indices (ascending) of k of n items drawn as `uniformaly fit --shots k --seed
    seed` draws them (a partial Fisher-Yates shuffle on the library's splitmix64)."""
    perm = list(range(n))
    st = c_uint64((int(seed) ^ 0x73686f7473) & 0xFFFFFFFFFFFFFFFF)  # "shots"
    for j in range(min(k, n)):
        r = j + lib.uf_splitmix64(byref(st)) % (n - j)
        perm[j], perm[r] = perm[r], perm[j]
    return sorted(perm[:min(k, n)])


def auroc(scores, labels):
    """Area under the ROC curve of scores (higher = anomalous) against 0/1 labels."""
    s = np.ascontiguousarray(scores, dtype=np.float32)
    y = np.ascontiguousarray(labels, dtype=np.uint8)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("uniformaly: scores and labels must be 1-d of the same length")
    return lib.uf_auroc(s.ctypes.data_as(POINTER(c_float)), y.ctypes.data_as(POINTER(c_uint8)), len(s))


# ---- backbone and parameters -----------------------------------------------------------

def bundled_backbone():
    """Path of the backbone that ships with uniformaly (the ImageNet ViT-Tiny/16, FP16; see
    NOTICE), found as the CLI finds it: $UNIFORMALY_BACKBONE, else share/uniformaly beside
    the installed library, else the source tree's models/. None if it is not there."""
    return _native.bundled_backbone()


class Backbone:
    """A Vision Transformer loaded from a checkpoint (.pth or .safetensors); path None: the
    bundled ViT-Tiny/16 (bundled_backbone()), whose inputs fit and evaluate then normalise
    with mean/std 0.5 unless told otherwise. Immutable; shared by every model fitted with
    it."""

    def __init__(self, path=None, heads=0, precision="fp32"):
        self.bundled = path is None
        if path is None:
            path = bundled_backbone()
            if path is None:
                raise Error(2, "uniformaly: no backbone given and the bundled backbone %s was "
                               "not found (set UNIFORMALY_BACKBONE or pass a checkpoint)"
                            % _native.BUNDLED_NAME)
        p = lib.uf_backbone_default_params()
        p.heads = int(heads or 0)
        h = ctypes.c_void_p()
        _check(lib.uf_backbone_load(os.fsencode(path), byref(p), byref(h)))
        self._h = h
        self.path = os.fspath(path)
        if precision != "fp32":
            _check(lib.uf_backbone_set_precision(h, _choice("precision", precision, _PRECISION)))

    @property
    def info(self):
        i = _native.BackboneInfo()
        lib.uf_backbone_get_info(self._h, byref(i))
        return {k: (getattr(i, k).decode() if k == "format" else getattr(i, k))
                for k, _ in _native.BackboneInfo._fields_}

    def __del__(self):
        if getattr(self, "_h", None):
            lib.uf_backbone_free(self._h)
            self._h = None


_INTERP = {"bilinear": 0, "bicubic": 1, "lanczos": 2, "nearest": 3}
_SAMPLER = {"greedy": 0, "random": 1}
_FIT = {"auto": 0, "short": 1, "long": 2}
_PRECISION = {"fp32": 0, "bf16": 1}  # uf_precision


def enable_amx():
    """Let BF16 run its matrix products on AMX tiles (CPUs with AMX-BF16): asks Linux for
    the process's AMX tile state, a process-wide setting the library never changes by itself
    (uf_enable_amx). Returns True when AMX is usable afterwards."""
    return lib.uf_enable_amx() == 0
# fit's keyword arguments, as the CLI's flags (--bpm-kernel -> bpm_kernel)
_METHOD = ("bpm", "bpm_kernel", "bpm_lambda", "soft_mask", "rollout", "coreset", "seed", "knn",
           "topk", "sigma", "cosine", "pca_mask", "pca_threshold", "rotations", "tile",
           "tile_overlap")
_PRE = ("resize", "crop", "pad_to")


def _choice(name, v, names):
    if v not in names:
        raise ValueError("uniformaly: %s must be one of %s, got %r" % (name, ", ".join(names), v))
    return names[v]


def _params(kw):
    """Keyword arguments -> uf_detector_params (defaults from the library; preset=
    "anomalydino" starts from uf_detector_preset_anomalydino, as --preset, and the other
    keywords override it). Unknown names raise TypeError; values are checked by the library
    (uf_detector_params_check)."""
    p = lib.uf_detector_default_params()
    preset = kw.pop("preset", None)
    if preset is not None:
        _choice("preset", preset, {"anomalydino": 0})
        lib.uf_detector_preset_anomalydino(byref(p))
    for k, v in kw.items():
        if k == "layers" and v == "last":  # UF_LAYER_LAST: the backbone's last block
            p.layer_first = p.layer_last = -1
        elif k == "layers":
            a, b = (int(t) for t in (v.split("-") if isinstance(v, str) else v))
            p.layer_first, p.layer_last = a, b
        elif k in _METHOD:
            setattr(p, k, int(v) if isinstance(getattr(p, k), int) else float(v))
        elif k == "sampler":
            p.sampler = _choice(k, v, _SAMPLER)
        elif k == "interp":
            p.pre.interp = _choice(k, v, _INTERP)
        elif k == "fit":
            p.pre.fit = _choice(k, v, _FIT)
        elif k in _PRE:
            setattr(p.pre, k, int(v))
        elif k in ("mean", "std"):
            vals = [float(t) for t in v]
            if len(vals) != 3:
                raise ValueError("uniformaly: %s needs 3 values" % k)
            getattr(p.pre, k)[:] = vals
        else:
            raise TypeError("uniformaly: unknown parameter '%s'" % k)
    if kw.get("pad_to", 0):  # as --pad-to: the letterbox unless told otherwise
        if "crop" not in kw:
            p.pre.crop = 0
        if "fit" not in kw:
            p.pre.fit = _FIT["long"]
        if "resize" not in kw:
            p.pre.resize = int(kw["pad_to"])
    return p


def _params_dict(p):
    inv_i = {v: k for k, v in _INTERP.items()}
    inv_s = {v: k for k, v in _SAMPLER.items()}
    inv_f = {v: k for k, v in _FIT.items()}
    d = {"layers": (p.layer_first, p.layer_last), "sampler": inv_s.get(p.sampler, "?"),
         "interp": inv_i.get(p.pre.interp, "?"), "mean": tuple(p.pre.mean), "std": tuple(p.pre.std),
         "fit": inv_f.get(p.pre.fit, "?")}
    d.update({k: getattr(p, k) for k in _METHOD})
    d.update({k: getattr(p.pre, k) for k in _PRE})
    for k in ("bpm", "soft_mask", "rollout", "cosine", "pca_mask"):
        d[k] = bool(d[k])
    return d


# ---- models ----------------------------------------------------------------------------

class _Handle:
    """Owns a uf_model (and keeps its borrowed backbone alive); scorers keep it alive."""

    def __init__(self, h, backbone):
        self.h = h
        self.backbone = backbone

    def __del__(self):
        if getattr(self, "h", None):
            lib.uf_model_free(self.h)
            self.h = None


class _Scorer:
    def __init__(self, handle):
        self.handle = handle
        self.s = ctypes.c_void_p()
        _check(lib.uf_scorer_new(handle.h, byref(self.s)))

    def __del__(self):
        if getattr(self, "s", None):
            lib.uf_scorer_free(self.s)
            self.s = None


class Result:
    """One scored image. score: the image score (float32 value); anomalous: score >
    threshold (None without a threshold); map: float32 [H][W] pixel map in the original
    image's geometry (None if maps=False); pixel_map: [S][S] the same in network-input
    coordinates; mask: uint8 [gh][gw] foreground patches; patch_scores: float32 [gh][gw];
    feature: float32 [D] top-K feature; patch_features: float32 [gh*gw][D] if asked."""

    __slots__ = ("score", "anomalous", "threshold", "map", "pixel_map", "mask", "patch_scores",
                 "feature", "patch_features")

    def __repr__(self):
        return "Result(score=%r, anomalous=%r)" % (self.score, self.anomalous)


class Model:
    """A fitted detector: made by uniformaly.fit or Model.load. Immutable and thread-safe:
    each thread that calls predict gets its own scorer."""

    def __init__(self, handle):
        self._handle = handle
        self._local = threading.local()
        gh, gw, S, D = c_int(), c_int(), c_int(), c_int()
        lib.uf_model_output_size(handle.h, byref(gh), byref(gw), byref(S), byref(D))
        self.grid = (gh.value, gw.value)
        self.input_size = S.value
        self.dim = D.value

    @classmethod
    def load(cls, path, backbone=None, allow_other_backbone=False, precision=None):
        """Load a model file (uniformaly fit / Model.save). backbone: a checkpoint path to
        use instead of the embedded or recorded one (same sha256 unless
        allow_other_backbone). When the recorded checkpoint cannot be read, the bundled
        backbone is tried: it is accepted only if it is the same file (sha256). precision:
        None scores with the precision the model records, "fp32" or "bf16" overrides it (as
        predict --precision)."""
        m = cls._load(path, backbone, allow_other_backbone)
        if precision is not None:
            _check(lib.uf_model_set_precision(m._handle.h,
                                              _choice("precision", precision, _PRECISION)))
        return m

    @classmethod
    def _load(cls, path, backbone, allow_other_backbone):
        p = lib.uf_model_load_default_params()
        p.backbone_path = os.fsencode(backbone) if backbone is not None else None
        p.allow_other_backbone = int(bool(allow_other_backbone))
        h = ctypes.c_void_p()
        st = lib.uf_model_load(os.fsencode(path), byref(p), byref(h))
        bundled = bundled_backbone() if st == 2 and backbone is None else None
        if bundled:  # the recorded checkpoint is gone: the bundled one if it is the same file
            msg = lib.uf_errmsg()
            p.backbone_path, p.allow_other_backbone = os.fsencode(bundled), 0
            if lib.uf_model_load(os.fsencode(path), byref(p), byref(h)) == 0:
                return cls(_Handle(h, None))
            raise Error(st, msg.decode("utf-8", "replace"))
        _check(st)
        return cls(_Handle(h, None))

    def save(self, path, embed_backbone=False):
        """Write the model file (atomically: the complete new file or the old one)."""
        _check(lib.uf_model_save(self._handle.h, os.fsencode(path), int(bool(embed_backbone))))

    @property
    def info(self):
        i = _native.ModelInfo()
        lib.uf_model_get_info(self._handle.h, byref(i))
        return {"params": _params_dict(i.params), "bank_size": i.bank_size,
                "bank_size_full": i.bank_size_full, "n_train": i.n_train, "dim": i.dim,
                "threshold": None if np.isnan(i.threshold) else float(i.threshold),
                "backbone_path": i.backbone_path.decode(errors="replace"),
                "backbone_sha256": i.backbone_sha256.decode(),
                "backbone_embedded": bool(i.backbone_embedded)}

    @property
    def threshold(self):
        return self.info["threshold"]

    @threshold.setter
    def threshold(self, t):
        """Not thread-safe with scoring."""
        lib.uf_model_set_threshold(self._handle.h, float("nan") if t is None else float(t))

    def _scorer(self):
        s = getattr(self._local, "scorer", None)
        if s is None:
            s = self._local.scorer = _Scorer(self._handle)
        return s.s

    def predict(self, images, maps=True, features=False, threshold=None, batch=8):
        """Score one image (a path, bytes, or an HxWx3 uint8 array) -> Result, or a list
        of them -> [Result], scored in batches of `batch` (8, as the CLI, whose scores
        these equal bit for bit). maps: also the pixel maps; features: also the patch
        features. threshold: instead of the model's."""
        single = isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or (
            isinstance(images, np.ndarray) and images.ndim <= 3 and images.dtype == np.uint8
            and (images.ndim == 2 or images.shape[-1] == 3))
        items = [images] if single else list(images)
        thr = self.threshold if threshold is None else float(threshold)
        out = []
        for b0 in range(0, len(items), max(1, int(batch))):
            out.extend(self._score_batch(items[b0:b0 + max(1, int(batch))], maps, features, thr))
        return out[0] if single else out

    def _score_batch(self, items, maps, features, thr):
        gh, gw = self.grid
        S, D, n = self.input_size, self.dim, len(items)
        decoded = [_decode(x) for x in items]
        ptrs = (POINTER(_native.Image) * n)(*[d[0] for d in decoded])
        res = (_native.Score * n)()
        arrays = []
        for r in res:
            a = {"patch_scores": np.empty((gh, gw), np.float32), "mask": np.empty((gh, gw), np.uint8),
                 "pixel_map": np.empty((S, S), np.float32) if maps else None,
                 "feature": np.empty(D, np.float32),
                 "patch_features": np.empty((gh * gw, D), np.float32) if features else None}
            for k, v in a.items():
                if v is not None:
                    setattr(r, k, v.ctypes.data_as(type(getattr(r, k))))
            arrays.append(a)
        _check(lib.uf_score_images(self._scorer(), ptrs, n, res))
        out = []
        for r, a, (p, _) in zip(res, arrays, decoded):
            o = Result()
            o.score = float(r.score)
            o.threshold = thr
            o.anomalous = None if thr is None else bool(np.float32(r.score) > np.float32(thr))
            o.pixel_map, o.mask, o.patch_scores = a["pixel_map"], a["mask"], a["patch_scores"]
            o.feature, o.patch_features = a["feature"], a["patch_features"]
            o.map = None
            if maps:
                w, h = p.contents.width, p.contents.height
                o.map = np.empty((h, w), np.float32)
                _check(lib.uf_model_map_to_image(self._handle.h, a["pixel_map"].ctypes.data_as(
                    POINTER(c_float)), w, h, o.map.ctypes.data_as(POINTER(c_float))))
            out.append(o)
        return out


def _backbone(backbone, heads, params, precision="fp32"):
    """A Backbone from a Backbone, a path or None (the bundled one, with mean/std 0.5 put
    into params unless given)."""
    if not isinstance(backbone, Backbone):
        backbone = Backbone(backbone, heads=heads, precision=precision)
    elif lib.uf_backbone_precision(backbone._h) != _choice("precision", precision, _PRECISION):
        # a Backbone is shared by the models fitted with it (and may be scoring in another
        # thread): another precision gets a backbone of its own
        bundled = backbone.bundled
        backbone = Backbone(backbone.path, heads=backbone.info["heads"], precision=precision)
        backbone.bundled = bundled
    if backbone.bundled:
        params.setdefault("mean", (0.5, 0.5, 0.5))
        params.setdefault("std", (0.5, 0.5, 0.5))
    return backbone


def fit(backbone=None, images=None, heads=0, batch=8, shots=None, threshold=None,
        precision="fp32", **params):
    """Fit a detector on normal images, as `uniformaly fit` does (same parameters, same
    model): backbone is a Backbone, a checkpoint path or None for the bundled ViT-Tiny/16
    (then mean/std 0.5 unless given, as the CLI without --backbone; heads: attention heads
    if not inferable); images a folder, a path, an HxWx3 uint8 array, bytes, or a list of them
    (folders expanded as the CLI does). shots: train on that many images drawn with
    `seed`, as --shots. params: layers=(3, 10), bpm, bpm_kernel, bpm_lambda, soft_mask,
    rollout, coreset, sampler ("greedy"/"random"), seed, knn, topk, sigma, tile,
    tile_overlap, resize, crop, pad_to, fit ("auto"/"short"/"long"), interp ("bilinear", "bicubic", "lanczos", "nearest"), mean, std; the
    AnomalyDINO parts: layers="last", cosine, pca_mask, pca_threshold, rotations (see
    uf_detector_preset_anomalydino in the header for their values), or preset="anomalydino"
    for all of them (as --preset); precision "fp32" or "bf16" (as --precision: recorded in
    the model; see enable_amx). Returns a Model."""
    if images is None:
        raise TypeError("uniformaly: fit needs images")
    backbone = _backbone(backbone, heads, params, precision)
    p = _params(params)
    _check(lib.uf_detector_params_check(byref(p), backbone._h))
    items = _expand(images)
    if shots:
        items = [items[i] for i in draw_shots(len(items), int(shots), p.seed)]
    f = ctypes.c_void_p()
    _check(lib.uf_fitter_new(backbone._h, byref(p), byref(f)))
    try:
        for b0 in range(0, len(items), max(1, int(batch))):
            decoded = [_decode(x) for x in items[b0:b0 + max(1, int(batch))]]
            ptrs = (POINTER(_native.Image) * len(decoded))(*[d[0] for d in decoded])
            _check(lib.uf_fitter_add(f, ptrs, len(decoded)))
        h = ctypes.c_void_p()
        _check(lib.uf_fitter_finish(f, None, None, byref(h)))
    finally:
        lib.uf_fitter_free(f)
    m = Model(_Handle(h, backbone))
    if threshold is not None:
        m.threshold = threshold
    return m


# ---- evaluation (uf_eval_run) ----------------------------------------------------------

def _figures(f):
    """uf_eval_figures -> dict; NaN (undefined, not computed) -> None."""
    def v(x):
        return None if x != x else float(x)
    d = {k: v(getattr(f, k)) for k, _ in _native.EvalFigures._fields_ if k != "cluster"}
    d["cluster"] = {name: {m: v(getattr(f.cluster[i], m)) for m in ("nmi", "ari", "f1")}
                    for i, name in enumerate(_native.EVAL_FEATURES)}
    return d


def _str(b):
    return None if b is None else b.decode("utf-8", "replace")


class EvalRow:
    """One row of an evaluation: a category, or the multi-class "overall". figures: the
    mean over repeats (dict: image_auroc, f1_max, f1_threshold, pixel_auroc, aupro,
    pixel_f1_max, pixel_f1_threshold, cluster {topk, all_patches, max_patch: {nmi, ari,
    f1}}, n_train, bank_size, bank_size_full, fit/extract/score_seconds; None where
    undefined); std: their population std; repeats: [{"seed", "figures", "scores"}];
    images / paths / types: the scored test images (names as in scores.csv, file paths or
    None, defect type or class); labels: uint8 1 = anomalous; scores: float32 image scores
    of the first repeat (None when the row has no scoring pass of its own)."""

    def __init__(self, r, n_repeats):
        self.name = _str(r.name)
        self.category = r.category
        self.n_test, self.n_test_anomalous = r.n_test, r.n_test_anomalous
        self.pixel, self.clustering = bool(r.pixel), bool(r.clustering)
        self.cluster_k, self.cluster_n = r.cluster_k, r.cluster_n
        self.finished = r.n_done == n_repeats
        self.figures, self.std = _figures(r.mean), _figures(r.std)
        n = r.n_scored
        self.images = [_str(r.items[i].name) for i in range(n)]
        self.paths = [_str(r.items[i].path) for i in range(n)]
        self.types = [_str(r.items[i].type) for i in range(n)]
        self.labels = np.ctypeslib.as_array(r.labels, (n,)).copy() if n else np.zeros(0, np.uint8)
        self.repeats = []
        for k in range(r.n_done):
            rep = r.repeats[k]
            sc = np.ctypeslib.as_array(rep.scores, (n,)).copy() if rep.scores and n else None
            self.repeats.append({"seed": rep.seed, "figures": _figures(rep.fig), "scores": sc})
        self.scores = self.repeats[0]["scores"] if self.repeats else None
        self.notes = _str(r.notes)

    def __repr__(self):
        return "EvalRow(%r, image_auroc=%r, pixel_auroc=%r)" % (
            self.name, self.figures["image_auroc"], self.figures["pixel_auroc"])


class Evaluation:
    """What uniformaly.evaluate measured (uf_eval_result): rows (EvalRow per selected
    category, in order; ev["bottle"] finds one by name), overall (multi-class) or None,
    mean / std over the rows (figure dicts as EvalRow.figures), params (the settings used,
    task defaults applied), coreset_source / preprocess_source (which rule set them),
    repeats, backbone_path, backbone_sha256, seconds {fit, extract, score}."""

    def __init__(self, r):
        self.params = _params_dict(r.params)
        self.coreset_source = _str(r.coreset_source)
        self.preprocess_source = _str(r.preprocess_source)
        self.repeats = r.repeats
        self.rows = [EvalRow(r.rows[i], r.repeats) for i in range(r.n_rows)]
        self.overall = EvalRow(r.overall.contents, r.repeats) if r.overall else None
        self.mean, self.std = _figures(r.mean), _figures(r.std)
        self.backbone_path = _str(r.backbone_path)
        self.backbone_sha256 = _str(r.backbone_sha256)
        self.seconds = {"fit": r.fit_seconds, "extract": r.extract_seconds,
                        "score": r.score_seconds}

    def __getitem__(self, name):
        for row in self.rows + ([self.overall] if self.overall else []):
            if row.name == name:
                return row
        raise KeyError(name)

    def __repr__(self):
        return "Evaluation(%s)" % ", ".join(repr(r) for r in self.rows)


_KEEP = {"resize": 1, "crop": 2, "pad_to": 2, "interp": 4, "coreset": 8}  # UF_EVAL_KEEP_*
_PROTOCOL = {"official": 0, "anomalous": 1}


def evaluate(dataset, root, backbone=None, categories=None, multi_class=False, cluster=False,
             cluster_protocol="official", shots=0, repeats=0, max_train=0, gt_threshold=0.5,
             max_fpr=0.3, batch=8, threads=0, heads=0, progress=None, **params):
    """Run the paper's protocols on a dataset, as `uniformaly eval` does (uf_eval_run; the
    same figures and image scores as its results.json and scores.csv). dataset: "mvtec",
    "btad", "mtd", "folder", "list", "cifar10", "cifar100", "mnist", "fashion-mnist",
    "imagefolder"; root its folder. backbone: a Backbone, a checkpoint path or None (the
    bundled ViT-Tiny/16 with mean/std 0.5 unless given). categories: names or indices (None:
    all). cluster: False, True (K = the number of types) or K; cluster_protocol "official"
    or "anomalous"; shots / repeats / max_train as --shots / --repeats / --max-train;
    gt_threshold 0.5, or 1.0 for --gt-mode exact. params: the method and preprocessing
    settings of fit; resize, crop, pad_to, interp and coreset given here override the task
    defaults. progress(stage, done, total): called as the run advances; a true return
    cancels it (Error "cancelled"). Returns an Evaluation; raises Error."""
    backbone = _backbone(backbone, heads, params)
    ep = lib.uf_eval_default_params()
    ep.detector = _params(params)
    ep.keep = 0
    for k in params:
        ep.keep |= _KEEP.get(k, 0)
    ep.multi_class = int(bool(multi_class))
    ep.cluster = 0 if cluster is False or cluster is None else (-1 if cluster is True else int(cluster))
    ep.cluster_protocol = _choice("cluster_protocol", cluster_protocol, _PROTOCOL)
    ep.shots, ep.repeats, ep.max_train = int(shots or 0), int(repeats or 0), int(max_train or 0)
    ep.gt_threshold, ep.max_fpr = float(gt_threshold), float(max_fpr)
    ep.batch, ep.threads = int(batch), int(threads)
    failure = []

    def on_progress(user, stage, done, total):
        try:
            return 1 if progress(stage.decode("utf-8", "replace"), done, total) else 0
        except BaseException as e:  # raised again below, not lost in the C frame
            failure.append(e)
            return 1
    cb = _native.ProgressFn(on_progress) if progress else _native.ProgressFn()
    ep.progress = cb
    kind = c_int()
    _check(lib.uf_dataset_kind_from_name(str(dataset).encode(), byref(kind)))
    ds = ctypes.c_void_p()
    _check(lib.uf_dataset_open(kind.value, os.fsencode(root), byref(ds)))
    res = POINTER(_native.EvalResult)()
    try:
        n = lib.uf_dataset_n_categories(ds)
        if categories is None:
            cats = list(range(n))
        else:
            cats = []
            for c in ([categories] if isinstance(categories, (str, int)) else categories):
                k = c if isinstance(c, int) else lib.uf_dataset_find_category(ds, str(c).encode())
                if not 0 <= k < n:
                    names = [_str(lib.uf_dataset_category(ds, j)) for j in range(min(n, 40))]
                    raise Error(1, "%s: no category %r; valid: %s" % (os.fspath(root), c,
                                                                       ", ".join(names)))
                cats.append(k)
        arr = (c_int * len(cats))(*cats)
        st = lib.uf_eval_run(ds, backbone._h, arr, len(cats), byref(ep), byref(res))
        if failure:
            raise failure[0]
        _check(st)
        return Evaluation(res.contents)
    finally:
        if res:
            lib.uf_eval_result_free(res)
        lib.uf_dataset_free(ds)
