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

SONAME_MAJOR = 1
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
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("uniformaly: cannot load the shared library %s; tried: %s. Set "
                      "UNIFORMALY_LIB to its path." % (SONAME, "; ".join(tried)))


lib = _load()


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
                ("pre", Preprocess), ("tile", c_int), ("tile_overlap", c_int)]


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
_proto("uf_detector_default_params", DetectorParams)
_proto("uf_detector_params_check", c_int, POINTER(DetectorParams), _P)
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
