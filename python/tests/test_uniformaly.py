"""Tests of the Python package (issue 14): the same detector as the CLI, bit for bit.

Why: the package re-declares the C structs and re-implements the CLI's image listing and
--shots draw; any slip there changes scores silently, so every path is compared with the
program's own output (scores as float32, maps from --raw-maps .npy files). The tiny golden
ViT of tests/data runs everywhere; bottle (MVTec AD) with the real ViT-Tiny runs when
../shared is present and is skipped visibly otherwise. Needs UF_BIN (the CLI) or a built
./uniformaly at the repository root.
"""
import glob
import json
import os
import subprocess
import threading

import numpy as np
import pytest

import uniformaly as uf

ROOT = os.environ.get("UF_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("UF_BIN") or os.path.join(ROOT, "uniformaly")
SHARED = os.environ.get("UF_SHARED") or os.path.join(ROOT, "..", "shared")
M1 = os.path.join(ROOT, "tests/data/golden/m1.safetensors")
D = os.path.join(ROOT, "tests/data/detector")
TRAIN = sorted(glob.glob(os.path.join(D, "train_*.png")))
TEST = [os.path.join(D, n) for n in ("test_good.png", "test_blob.png", "test_crack.png")]
TINY = dict(layers=(2, 4), resize=72, crop=64, mean=(.5, .5, .5), std=(.5, .5, .5), coreset=0.5)
TINY_FLAGS = ["--heads", "3", "--layers", "2-4", "--resize", "72", "--crop", "64",
              "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--coreset", "0.5"]


def f32(x):
    return np.float32(x)


def cli(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cli_predict(model, images, tmp, maps=True):
    """[(score as float32, map or None)] from `uniformaly predict --json [--raw-maps]`."""
    extra = ["--heatmap-dir", tmp, "--raw-maps"] if maps else []
    out = []
    for line in cli("predict", model, "--json", "--quiet", *extra, *images).splitlines():
        o = json.loads(line)
        out.append((f32(o["score"]), np.load(o["map"]) if maps else None))
    assert len(out) == len(images)
    return out


def assert_same(results, expected):
    assert len(results) == len(expected)
    for r, (s, m) in zip(results, expected):
        assert f32(r.score) == s
        if m is not None:
            assert r.map.dtype == np.float32 and r.map.shape == m.shape
            assert np.array_equal(r.map, m)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model fitted by the CLI, and the CLI's results on TEST."""
    t = tmp_path_factory.mktemp("tiny")
    cli("fit", "--backbone", M1, *TINY_FLAGS, "--quiet", "--out", t / "cli.ufm", *TRAIN)
    return t, str(t / "cli.ufm"), cli_predict(t / "cli.ufm", TEST, t / "maps")


def test_version_and_struct_layouts():
    hdr = open(os.path.join(ROOT, "include/uniformaly.h")).read()
    assert '#define UF_VERSION_STRING "%s"' % uf.version() in hdr
    # the library's defaults read back through the ctypes structs: a layout slip garbles them
    p = uf._params({})
    d = uf._params_dict(p)
    assert d["layers"] == (3, 10) and d["bpm"] and d["bpm_kernel"] == 7
    assert f32(d["bpm_lambda"]) == f32(0.1) and d["coreset"] == 0.1 and d["knn"] == 1
    assert d["topk"] == 0.05 and d["sigma"] == 4 and d["sampler"] == "greedy" and d["seed"] == 0
    assert (d["resize"], d["crop"], d["pad_to"], d["interp"]) == (256, 224, 0, "bilinear")
    assert np.array_equal(np.float32(d["mean"]), np.float32([0.485, 0.456, 0.406]))
    assert np.array_equal(np.float32(d["std"]), np.float32([0.229, 0.224, 0.225]))
    e = uf.lib.uf_eval_default_params()  # the evaluation structs
    assert (e.cluster_restarts, e.cluster_max_iter, e.gt_threshold, e.max_fpr, e.batch) == (10, 300, 0.5, 0.3, 8)
    assert e.detector.layer_last == 10 and e.keep == 0 and e.multi_class == 0 and not e.progress


def test_fit_and_predict_equal_the_cli(tiny, tmp_path):
    t, cli_model, expected = tiny
    m = uf.fit(M1, TRAIN, heads=3, **TINY)
    assert_same(m.predict(TEST), expected)
    # the CLI's model scored from Python, and Python's model scored by the CLI
    assert_same(uf.Model.load(cli_model).predict(TEST), expected)
    m.save(tmp_path / "py.ufm")
    assert [s for s, _ in cli_predict(tmp_path / "py.ufm", TEST, tmp_path / "maps")] == \
        [s for s, _ in expected]
    info = uf.Model.load(tmp_path / "py.ufm").info
    assert info["n_train"] == len(TRAIN) and info["params"]["layers"] == (2, 4)
    assert info["bank_size"] < info["bank_size_full"]


def test_folder_arrays_and_bytes_equal_paths(tiny):
    _, _, expected = tiny
    arrays = [uf.load_image(p) for p in TRAIN]
    assert arrays[0].dtype == np.uint8 and arrays[0].ndim == 3 and arrays[0].shape[2] == 3
    # the folder holds the test images too: fit on a folder of the training images only
    for images in (arrays, [open(p, "rb").read() for p in TRAIN]):
        m = uf.fit(M1, images, heads=3, **TINY)
        assert_same(m.predict(TEST), expected)
        assert_same(m.predict([uf.load_image(p) for p in TEST]), expected)
        assert_same([m.predict(open(p, "rb").read()) for p in TEST[:1]], expected[:1])
    assert uf.list_images(D) == sorted(glob.glob(os.path.join(D, "*.png")), key=os.fsencode)


def test_result_fields(tiny):
    _, cli_model, _ = tiny
    m = uf.Model.load(cli_model)
    r = m.predict(TEST[1], features=True, threshold=0.0)
    gh, gw = m.grid
    assert r.mask.shape == (gh, gw) and r.mask.dtype == np.uint8 and 0 < r.mask.sum() <= gh * gw
    assert r.patch_scores.shape == (gh, gw) and r.feature.shape == (m.dim,)
    assert r.patch_features.shape == (gh * gw, m.dim)
    assert r.pixel_map.shape == (m.input_size, m.input_size)
    assert r.anomalous is True and r.threshold == 0.0
    r2 = m.predict(TEST[1], maps=False, threshold=1e9)
    assert r2.map is None and r2.anomalous is False and f32(r2.score) == f32(r.score)
    assert m.predict(TEST[1]).anomalous is None  # no threshold stored


@pytest.mark.parametrize("py_kw,cli_flags", [
    (dict(precision="bf16"), ["--precision", "bf16"]),
    (dict(preset="anomalydino", rotations=2), ["--preset", "anomalydino", "--rotations", "2"]),
])
def test_precision_and_preset_equal_the_cli(tmp_path, py_kw, cli_flags):
    """fit(precision=..., preset=...) gives the CLI's model: same scores and maps (the
    preset first, the other settings overriding its parts, in both)."""
    cli("fit", "--backbone", M1, *cli_flags, *TINY_FLAGS, "--quiet", "--out", tmp_path / "c.ufm",
        *TRAIN)
    expected = cli_predict(tmp_path / "c.ufm", TEST, tmp_path / "maps")
    m = uf.fit(M1, TRAIN, heads=3, **TINY, **py_kw)
    assert_same(m.predict(TEST), expected)
    m.save(tmp_path / "p.ufm")
    assert_same(uf.Model.load(tmp_path / "p.ufm").predict(TEST), expected)
    if "precision" in py_kw:  # the recorded precision, and the override
        fp32 = uf.Model.load(tmp_path / "p.ufm", precision="fp32").predict(TEST)
        assert [f32(r.score) for r in fp32] != [s for s, _ in expected]
        with pytest.raises(ValueError):
            uf.Model.load(tmp_path / "p.ufm", precision="fp16")
    assert isinstance(uf.enable_amx(), bool)


def test_precision_leaves_a_shared_backbone_alone(tmp_path):
    """fit(b, precision="bf16") on a shared Backbone must not change b: models fitted with b
    before keep their scores, and a later FP32 fit is FP32."""
    b = uf.Backbone(M1, heads=3)
    m0 = uf.fit(b, TRAIN, **TINY)
    before = [f32(r.score) for r in m0.predict(TEST)]
    m1 = uf.fit(b, TRAIN, precision="bf16", **TINY)
    assert [f32(r.score) for r in m0.predict(TEST)] == before
    assert [f32(r.score) for r in m1.predict(TEST)] != before
    m2 = uf.fit(b, TRAIN, precision="fp32", **TINY)
    assert [f32(r.score) for r in m2.predict(TEST)] == before


def test_pad_to_is_the_clis_letterbox(tmp_path):
    """pad_to=S as --pad-to S: the letterbox (crop 0, fit long, resize S unless given)."""
    flags = [f for f in TINY_FLAGS if f not in ("--resize", "72", "--crop", "64")]
    cli("fit", "--backbone", M1, *flags, "--pad-to", "64", "--quiet", "--out", tmp_path / "c.ufm",
        *TRAIN)
    expected = cli_predict(tmp_path / "c.ufm", TEST, tmp_path / "maps")
    kw = {k: v for k, v in TINY.items() if k not in ("resize", "crop")}
    m = uf.fit(M1, TRAIN, heads=3, pad_to=64, **kw)
    assert_same(m.predict(TEST), expected)


def test_shots_draw_equals_the_cli(tmp_path):
    cli("fit", "--backbone", M1, *TINY_FLAGS, "--quiet", "--shots", "2", "--seed", "5",
        "--out", tmp_path / "s.ufm", *TRAIN)
    expected = cli_predict(tmp_path / "s.ufm", TEST, tmp_path, maps=False)
    m = uf.fit(M1, TRAIN, heads=3, shots=2, seed=5, **TINY)
    assert m.info["n_train"] == 2
    assert_same(m.predict(TEST, maps=False), expected)


def test_errors_carry_the_library_message(tmp_path):
    with pytest.raises(uf.Error) as e:
        uf.Model.load(tmp_path / "none.ufm")
    assert "none.ufm" in str(e.value) and e.value.status_name == "i/o error"
    with pytest.raises(uf.Error) as e:
        uf.fit(M1, TRAIN, heads=3, knn=0)
    assert "knn" in str(e.value)
    with pytest.raises(uf.Error) as e:
        uf.fit(M1, TRAIN, heads=3, layers=(3, 10))  # the tiny ViT has 4 blocks
    assert "layer" in str(e.value)
    m = uf.fit(M1, TRAIN, heads=3, **TINY)
    with pytest.raises(uf.Error) as e:
        m.predict(b"not an image")
    assert e.value.status_name == "format error"
    with pytest.raises(uf.Error) as e:
        m.predict(os.path.join(tmp_path, "missing.png"))
    assert "missing.png" in str(e.value)
    with pytest.raises(TypeError):
        uf.fit(M1, TRAIN, heads=3, no_such_param=1)
    with pytest.raises(ValueError):
        uf.fit(M1, TRAIN, heads=3, sampler="best")
    with pytest.raises(ValueError):
        m.predict(np.zeros((8, 8, 4), np.uint8)[None])
    with pytest.raises(uf.Error):
        uf.Backbone(tmp_path / "missing.safetensors")


def test_threads_score_one_model_at_once(tiny):
    _, cli_model, expected = tiny
    m = uf.Model.load(cli_model)
    want = [f32(m.predict(p).score) for p in TEST]
    got, errors = {}, []

    def work(k):
        try:
            for rep in range(3):
                for i, p in enumerate(TEST):
                    got[(k, rep, i)] = f32(m.predict(p).score)
        except Exception as e:  # reported below, not lost in the thread
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert len(got) == 4 * 3 * len(TEST)
    assert all(v == want[i] for (_, _, i), v in got.items())


BOTTLE = os.path.join(SHARED, "data/mvtec_ad/bottle")
VIT = os.path.join(SHARED, "weights/vit_tiny_patch16_224.safetensors")


def test_bottle_equals_the_cli(tmp_path):
    """ViT-Tiny on MVTec AD bottle, 16 shots: every other test image's score (42, all
    defect types) and 4 maps. Skipped without ../shared, failed then if UF_REQUIRE_SHARED=1."""
    if not (os.path.isdir(BOTTLE) and os.path.exists(VIT)):
        why = "../shared not found (%s, %s): set UF_SHARED" % (BOTTLE, VIT)
        if os.environ.get("UF_REQUIRE_SHARED") == "1":
            pytest.fail(why + "; UF_REQUIRE_SHARED=1 says it must be there")
        pytest.skip(why)
    flags = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--shots", "16"]
    cli("fit", "--backbone", VIT, *flags, "--quiet", "--out", tmp_path / "b.ufm",
        os.path.join(BOTTLE, "train"))
    test = uf.list_images(os.path.join(BOTTLE, "test"))
    assert len(test) == 83
    test, some = test[::2], test[::22]
    expected = cli_predict(tmp_path / "b.ufm", test, tmp_path, maps=False)
    expected_maps = cli_predict(tmp_path / "b.ufm", some, tmp_path / "maps")
    m = uf.fit(VIT, os.path.join(BOTTLE, "train"), mean=(.5, .5, .5), std=(.5, .5, .5), shots=16)
    assert_same(m.predict(test, maps=False), expected)
    assert_same(m.predict(some), expected_maps)
    labels = [0 if "/good/" in p else 1 for p in test]
    assert uf.auroc([s for s, _ in expected], labels) > 0.8


# ---- the evaluation API (uniformaly.evaluate = uf_eval_run) against `uniformaly eval` ----

MVTEC = os.path.join(ROOT, "tests/data/dataset/mvtec")
EVAL_KEYS = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max", "f1_threshold",
             "pixel_f1_threshold", "n_train", "bank_size", "bank_size_full")


def cli_eval(tmp, *flags):
    """results.json and the scores.csv rows of `uniformaly eval --dataset mvtec` on the
    fixture dataset."""
    cli("eval", "--dataset", "mvtec", "--root", MVTEC, "--quiet", "--out", tmp, *flags)
    res = json.load(open(os.path.join(tmp, "results.json")))
    rows = [l.split(",") for l in open(os.path.join(tmp, "scores.csv")).read().splitlines()[1:]]
    return res, rows


def assert_eval_equal(ev, res, rows):
    assert res["status"] == "complete"
    assert [r.name for r in ev.rows] == list(res["categories"])
    for r in ev.rows:
        want = res["categories"][r.name]
        assert r.finished and r.n_test == want["n_test"] and r.n_test_anomalous == want["n_test_anomalous"]
        for k in EVAL_KEYS:
            assert r.figures[k] == want.get(k), (r.name, k, r.figures[k], want.get(k))
        mine = [(r.name, im, t, str(int(y)), f32(s))
                for im, t, y, s in zip(r.images, r.types, r.labels, r.scores)]
        theirs = [(c, im, t, y, f32(s)) for c, im, t, y, s in rows if c == r.name]
        assert mine == theirs and len(mine) == r.n_test
        if "clustering" in want:
            cl = want["clustering"]
            assert r.cluster_k == cl["k"] and r.cluster_n == cl["n"]
            got = r.figures["cluster"]
            assert [got["topk"][m] for m in ("nmi", "ari", "f1")] == [cl[m] for m in ("nmi", "ari", "f1")]
            for v in ("all_patches", "max_patch"):
                assert got[v] == {m: cl["variants"][v][m] for m in ("nmi", "ari", "f1")}
    for k in ("image_auroc", "pixel_auroc", "aupro", "f1_max"):
        assert ev.mean[k] == res["mean"][k], k


def test_evaluate_equals_cli_eval(tmp_path):
    """The tiny ViT on the MVTec-layout fixtures, with clustering: every figure of
    results.json and every image score of scores.csv, exactly."""
    res, rows = cli_eval(tmp_path, "--backbone", M1, *TINY_FLAGS, "--cluster")
    ev = uf.evaluate("mvtec", MVTEC, backbone=M1, heads=3, cluster=True, **TINY)
    assert_eval_equal(ev, res, rows)
    assert len(rows) == 8 and len({r[4] for r in rows}) > 1  # scores differ: the check bites
    assert ev.params["coreset"] == 0.5 and ev.coreset_source == res["settings"]["defaults"]["coreset"]
    assert ev.backbone_sha256 == res["settings"]["backbone"]["sha256"]
    a = ev["cat_a"]
    assert list(a.labels) == [0, 0, 1, 1, 1] and a.pixel and a.scores.dtype == np.float32
    assert a.paths[0].endswith("cat_a/test/good/000.png") and a.repeats[0]["seed"] == 0


def test_evaluate_progress_cancel_and_errors():
    stages = []
    uf.evaluate("mvtec", MVTEC, backbone=M1, heads=3, categories=["cat_b"],
                progress=lambda s, d, t: stages.append(s), **TINY)
    assert any(s.startswith("cat_b: ") for s in stages)
    with pytest.raises(uf.Error) as e:
        uf.evaluate("mvtec", MVTEC, backbone=M1, heads=3, progress=lambda s, d, t: True, **TINY)
    assert "cancelled" in str(e.value)
    with pytest.raises(uf.Error) as e:
        uf.evaluate("mvtec", MVTEC, backbone=M1, heads=3, categories=["nope"], **TINY)
    assert "nope" in str(e.value) and "cat_a" in str(e.value)
    with pytest.raises(uf.Error) as e:
        uf.evaluate("no-such-kind", MVTEC, backbone=M1, heads=3, **TINY)
    with pytest.raises(uf.Error):
        uf.evaluate("mvtec", os.path.join(MVTEC, "missing"), backbone=M1, heads=3, **TINY)


# ---- the bundled backbone: the default of fit, evaluate and Model.load, as in the CLI ----

SMALL = dict(resize=72, crop=64)
SMALL_FLAGS = ["--resize", "72", "--crop", "64"]


def test_bundled_backbone_is_the_default(tmp_path):
    bundled = uf.bundled_backbone()
    assert bundled and os.path.basename(bundled) == "vit_tiny_patch16_224.fp16.safetensors"
    cli("fit", *SMALL_FLAGS, "--quiet", "--out", tmp_path / "cli.ufm", *TRAIN)
    expected = cli_predict(tmp_path / "cli.ufm", TEST, tmp_path / "maps")
    m = uf.fit(images=TRAIN, **SMALL)
    info = m.info
    assert os.path.realpath(info["backbone_path"]) == os.path.realpath(bundled)
    assert info["params"]["mean"] == (0.5, 0.5, 0.5) and info["params"]["std"] == (0.5, 0.5, 0.5)
    assert_same(m.predict(TEST), expected)
    m4 = uf.fit(None, TRAIN, mean=(.4, .4, .4), **SMALL)  # a given mean wins
    assert np.float32(m4.info["params"]["mean"][0]) == np.float32(0.4) and m4.info["params"]["std"] == (.5, .5, .5)
    # evaluate without a backbone equals `uniformaly eval` without --backbone
    res, rows = cli_eval(tmp_path / "ev", *SMALL_FLAGS, "--category", "cat_a")
    assert_eval_equal(uf.evaluate("mvtec", MVTEC, categories=["cat_a"], **SMALL), res, rows)


def test_model_load_falls_back_to_the_bundled_backbone(tmp_path):
    """A model whose recorded checkpoint is gone loads with the bundled file when it is the
    same file (sha256), and not with a different one."""
    copy = tmp_path / "vit_tiny_patch16_224.fp16.safetensors"
    copy.write_bytes(open(uf.bundled_backbone(), "rb").read())
    m = uf.fit(str(copy), TRAIN, mean=(.5, .5, .5), std=(.5, .5, .5), **SMALL)
    m.save(tmp_path / "m.ufm")
    want = f32(m.predict(TEST[1]).score)
    copy.unlink()
    assert f32(uf.Model.load(tmp_path / "m.ufm").predict(TEST[1]).score) == want
    other = tmp_path / "m1.safetensors"
    other.write_bytes(open(M1, "rb").read())
    uf.fit(str(other), TRAIN, heads=3, **TINY).save(tmp_path / "g.ufm")
    other.unlink()
    with pytest.raises(uf.Error) as e:
        uf.Model.load(tmp_path / "g.ufm")
    assert "m1.safetensors" in str(e.value) and e.value.status_name == "i/o error"
