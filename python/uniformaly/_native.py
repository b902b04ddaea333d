"""ctypes declarations of the C API (include/uniformaly.h) and the search for the library.

Why this file: the Python package compiles nothing at install time, so the C structs and
function prototypes are mirrored here by hand; keep them in step with the header (the
tests check the struct layouts by reading the library's defaults back through them).
ctypes.CDLL releases the GIL around every call, so scoring runs in parallel across threads.
"""
import ctypes
import glob
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_size_t,
                    c_uint8, c_uint64, c_void_p)

SONAME_MAJOR = 2
SONAME = "libuniformaly.so.%d" % SONAME_MAJOR
_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Where the shared library may be, in the order tried."""
    env = os.environ.get("UNIFORMALY_LIB")
    if env:  # an explicit choice is the only one tried
        return [env]
    out = sorted(glob.glob(os.path.join(_HERE, "libuniformaly.so*")))  # beside the package
    libdir_file = os.path.join(_HERE, "_libdir.txt")  # written by `make install`
    if os.path.exists(libdir_file):
        with open(libdir_file) as f:
            out.append(os.path.join(f.read().strip(), SONAME))
    out.append(os.path.join(_HERE, "..", "..", "build", SONAME))  # the source tree
    out.append(SONAME)  # the dynamic loader's search (LD_LIBRARY_PATH, ld.so.cache)
    return out


def _load():
    global lib_path
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            cdll = ctypes.CDLL(path)
            lib_path = os.path.abspath(path) if os.sep in path else None
            return cdll
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("uniformaly: cannot load the shared library %s; tried: %s. Set "
                      "UNIFORMALY_LIB to its path." % (SONAME, "; ".join(tried)))


lib_path = None  # the file loaded, when found by path (not by the dynamic loader's search)
lib = _load()

BUNDLED_NAME = "vit_tiny_patch16_224.fp16.safetensors"


def bundled_backbone():
    """The backbone that ships with uniformaly (see NOTICE), as the CLI finds it:
    $UNIFORMALY_BACKBONE if set, else the first existing of <libdir>/../share/uniformaly
    (make install), <libdir>/../models (the source tree's build/) and the source tree's
    models/ beside this package. None if none exists."""
    env = os.environ.get("UNIFORMALY_BACKBONE")
    if env:
        return env
    where = []
    if lib_path:
        d = os.path.dirname(os.path.realpath(lib_path))
        where += [os.path.join(d, "..", "share", "uniformaly"), os.path.join(d, "..", "models")]
    where.append(os.path.join(_HERE, "..", "..", "models"))
    for w in where:
        p = os.path.normpath(os.path.join(w, BUNDLED_NAME))
        if os.path.isfile(p):
            return p
    return None


class Image(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("rgb", POINTER(c_uint8))]


class Preprocess(Structure):
    _fields_ = [("resize", c_int), ("crop", c_int), ("pad_to", c_int), ("interp", c_int),
                ("mean", c_float * 3), ("std", c_float * 3), ("fit", c_int)]


class DetectorParams(Structure):
    _fields_ = [("layer_first", c_int), ("layer_last", c_int), ("bpm", c_int),
                ("bpm_kernel", c_int), ("bpm_lambda", c_float), ("soft_mask", c_int),
                ("rollout", c_int), ("coreset", c_double), ("sampler", c_int),
                ("seed", c_uint64), ("knn", c_int), ("topk", c_double), ("sigma", c_double),
                ("pre", Preprocess), ("cosine", c_int), ("pca_mask", c_int),
                ("pca_threshold", c_float), ("rotations", c_int), ("tile", c_int),
                ("tile_overlap", c_int)]


class BackboneParams(Structure):
    _fields_ = [("heads", c_int), ("ln_eps", c_float)]


class BackboneInfo(Structure):
    _fields_ = [("dim", c_int), ("depth", c_int), ("heads", c_int), ("patch", c_int),
                ("mlp_dim", c_int), ("grid_h", c_int), ("grid_w", c_int),
                ("n_classes", c_int), ("n_params", c_size_t), ("format", c_char_p)]


class ModelInfo(Structure):
    _fields_ = [("params", DetectorParams), ("bank_size", c_size_t),
                ("bank_size_full", c_size_t), ("n_train", c_size_t), ("dim", c_int),
                ("bank_bytes", c_size_t), ("threshold", c_float), ("backbone", BackboneInfo),
                ("backbone_path", c_char_p), ("backbone_sha256", c_char_p),
                ("backbone_embedded", c_int)]


class ModelLoadParams(Structure):
    _fields_ = [("backbone_path", c_char_p), ("allow_other_backbone", c_int)]


class DatasetItem(Structure):
    _fields_ = [("path", c_char_p), ("mask_path", c_char_p), ("name", c_char_p),
                ("type", c_char_p), ("type_id", c_int), ("anomalous", c_int),
                ("class_id", c_int), ("image_id", c_size_t)]


class _Cluster(Structure):
    _fields_ = [("nmi", c_double), ("ari", c_double), ("f1", c_double)]


EVAL_FEATURES = ("topk", "all_patches", "max_patch")  # uf_eval_figures.cluster indices


class EvalFigures(Structure):
    _fields_ = [("image_auroc", c_double), ("f1_max", c_double), ("f1_threshold", c_double),
                ("pixel_auroc", c_double), ("aupro", c_double), ("pixel_f1_max", c_double),
                ("pixel_f1_threshold", c_double), ("cluster", _Cluster * 3),
                ("n_train", c_double), ("bank_size", c_double), ("bank_size_full", c_double),
                ("fit_seconds", c_double), ("extract_seconds", c_double),
                ("score_seconds", c_double)]


class EvalRepeat(Structure):
    _fields_ = [("fig", EvalFigures), ("seed", c_uint64), ("scores", POINTER(c_float))]


class EvalRow(Structure):
    _fields_ = [("name", c_char_p), ("category", c_int), ("n_test", c_size_t),
                ("n_test_anomalous", c_size_t), ("pixel", c_int), ("clustering", c_int),
                ("cluster_k", c_int), ("cluster_n", c_size_t), ("n_done", c_int),
                ("repeats", POINTER(EvalRepeat)), ("mean", EvalFigures), ("std", EvalFigures),
                ("n_scored", c_size_t), ("items", POINTER(DatasetItem)),
                ("labels", POINTER(c_uint8)), ("notes", c_char_p)]


class EvalResult(Structure):
    _fields_ = [("params", DetectorParams), ("coreset_source", c_char_p),
                ("preprocess_source", c_char_p), ("repeats", c_int), ("n_rows", c_int),
                ("rows", POINTER(EvalRow)), ("overall", POINTER(EvalRow)),
                ("n_finished", c_int), ("mean", EvalFigures), ("std", EvalFigures),
                ("grid_h", c_int), ("grid_w", c_int), ("S", c_int), ("D", c_int),
                ("backbone_path", ctypes.c_char * 1024), ("backbone_sha256", ctypes.c_char * 65),
                ("fit_seconds", c_double), ("extract_seconds", c_double),
                ("score_seconds", c_double)]


# int (*)(void *user, const char *stage, size_t done, size_t total)
ProgressFn = ctypes.CFUNCTYPE(c_int, c_void_p, c_char_p, c_size_t, c_size_t)


class EvalParams(Structure):
    _fields_ = [("detector", DetectorParams), ("keep", ctypes.c_uint), ("multi_class", c_int),
                ("cluster", c_int), ("cluster_protocol", c_int), ("cluster_restarts", c_int),
                ("cluster_max_iter", c_int), ("shots", c_size_t), ("repeats", c_int),
                ("max_train", c_size_t), ("gt_threshold", c_double), ("max_fpr", c_double),
                ("batch", c_int), ("threads", c_int), ("want_maps", c_int),
                ("progress", ProgressFn), ("on_update", c_void_p), ("on_maps", c_void_p),
                ("user", c_void_p), ("zero_shot", c_double), ("on_model", c_void_p)]


class Score(Structure):
    _fields_ = [("score", c_float), ("patch_scores", POINTER(c_float)),
                ("mask", POINTER(c_uint8)), ("pixel_map", POINTER(c_float)),
                ("patch_features", POINTER(c_float)), ("feature", POINTER(c_float))]


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_P = c_void_p  # opaque handles
_proto("uf_errmsg", c_char_p)
_proto("uf_status_str", c_char_p, c_int)
_proto("uf_version", c_char_p)
_proto("uf_version_number", c_int)
_proto("uf_splitmix64", c_uint64, POINTER(c_uint64))
_proto("uf_set_threads", None, c_int)
_proto("uf_get_threads", c_int)
_proto("uf_is_image_name", c_int, c_char_p)
_proto("uf_image_load", c_int, c_char_p, POINTER(POINTER(Image)))
_proto("uf_image_decode", c_int, c_void_p, c_size_t, POINTER(POINTER(Image)))
_proto("uf_image_free", None, POINTER(Image))
_proto("uf_backbone_default_params", BackboneParams)
_proto("uf_backbone_load", c_int, c_char_p, POINTER(BackboneParams), POINTER(_P))
_proto("uf_backbone_free", None, _P)
_proto("uf_backbone_get_info", None, _P, POINTER(BackboneInfo))
_proto("uf_backbone_set_precision", c_int, _P, c_int)
_proto("uf_backbone_precision", c_int, _P)
_proto("uf_model_set_precision", c_int, _P, c_int)
_proto("uf_enable_amx", c_int)
_proto("uf_detector_default_params", DetectorParams)
_proto("uf_detector_params_check", c_int, POINTER(DetectorParams), _P)
_proto("uf_detector_preset_anomalydino", None, POINTER(DetectorParams))
_proto("uf_fitter_new", c_int, _P, POINTER(DetectorParams), POINTER(_P))
_proto("uf_fitter_add", c_int, _P, POINTER(POINTER(Image)), c_int)
_proto("uf_fitter_bank_size", c_size_t, _P)
_proto("uf_fitter_finish", c_int, _P, c_void_p, c_void_p, POINTER(_P))
_proto("uf_fitter_free", None, _P)
_proto("uf_model_free", None, _P)
_proto("uf_model_get_info", None, _P, POINTER(ModelInfo))
_proto("uf_model_set_threshold", None, _P, c_float)
_proto("uf_model_save", c_int, _P, c_char_p, c_int)
_proto("uf_model_load_default_params", ModelLoadParams)
_proto("uf_model_load", c_int, c_char_p, POINTER(ModelLoadParams), POINTER(_P))
_proto("uf_scorer_new", c_int, _P, POINTER(_P))
_proto("uf_scorer_free", None, _P)
_proto("uf_model_output_size", None, _P, POINTER(c_int), POINTER(c_int), POINTER(c_int),
       POINTER(c_int))
_proto("uf_score_images", c_int, _P, POINTER(POINTER(Image)), c_int, POINTER(Score))
_proto("uf_model_map_to_image", c_int, _P, POINTER(c_float), c_int, c_int, POINTER(c_float))
_proto("uf_auroc", c_double, POINTER(c_float), POINTER(c_uint8), c_size_t)
_proto("uf_dataset_kind_from_name", c_int, c_char_p, POINTER(c_int))
_proto("uf_dataset_open", c_int, c_int, c_char_p, POINTER(_P))
_proto("uf_dataset_free", None, _P)
_proto("uf_dataset_n_categories", c_int, _P)
_proto("uf_dataset_category", c_char_p, _P, c_int)
_proto("uf_dataset_find_category", c_int, _P, c_char_p)
_proto("uf_eval_default_params", EvalParams)
_proto("uf_eval_run", c_int, _P, _P, POINTER(c_int), c_int, POINTER(EvalParams),
       POINTER(POINTER(EvalResult)))
_proto("uf_eval_result_free", None, POINTER(EvalResult))
