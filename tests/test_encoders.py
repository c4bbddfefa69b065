import numpy as np
import pytest
from PIL import Image

from mirage_core.encoders import create_encoder
from mirage_core.errors import MirageError


def _images():
    return [Image.new("RGB", (50, 40), (200, 10, 10)), Image.new("L", (30, 60), 90)]


def _check_interface(encoder):
    texts = encoder.encode_text(["chest x-ray", "MRI of the brain", "chest x-ray"])
    images = encoder.encode_image(_images())
    assert texts.dtype == np.float32 and images.dtype == np.float32
    assert texts.shape == (3, encoder.dim) and images.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(texts[0], texts[2], atol=1e-5)  # deterministic
    assert not np.allclose(texts[0], texts[1])
    assert encoder.encode_text([]).shape == (0, encoder.dim)
    assert isinstance(encoder.fingerprint, str) and len(encoder.fingerprint) >= 16


def test_tiny_open_clip_local_dir(tiny_open_clip_dir):
    encoder = create_encoder(f"open_clip:local-dir:{tiny_open_clip_dir}")
    assert encoder.dim == 32 and encoder.name.startswith("open_clip:")
    _check_interface(encoder)
    again = create_encoder(f"open_clip:local-dir:{tiny_open_clip_dir}")
    assert again.fingerprint == encoder.fingerprint


def test_open_clip_fingerprint_follows_the_weights(tiny_open_clip_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(tiny_open_clip_dir, copy)
    weights = load_file(str(copy / "open_clip_model.safetensors"))
    weights["text_projection"] = weights["text_projection"] + torch.randn_like(weights["text_projection"])
    save_file(weights, str(copy / "open_clip_model.safetensors"))
    original = create_encoder(f"open_clip:local-dir:{tiny_open_clip_dir}")
    changed = create_encoder(f"open_clip:local-dir:{copy}")
    assert original.fingerprint != changed.fingerprint


def test_unavailable_hub_model_is_a_clear_error():
    with pytest.raises(MirageError, match="cannot load open_clip model"):
        create_encoder("open_clip:hf-hub:nobody/not-a-model")


def test_unknown_profile():
    with pytest.raises(MirageError, match="unknown encoder"):
        create_encoder("resnet")


def test_lite_encoder_interface(lite_encoder):
    assert lite_encoder.dim == 256  # 2 ensemble members × 128
    _check_interface(lite_encoder)


def test_lite_places_matching_text_nearest(lite_encoder, demo_slice):
    """The shipped heads put a caption closer to its own image than chance would (48 candidates)."""
    from mirage_core.images import open_image

    records = demo_slice.records
    images = lite_encoder.encode_image([open_image(r.image_path) for r in records])
    texts = lite_encoder.encode_text([r.caption for r in records])
    ranks = ((texts @ images.T) > np.sum(texts * images, axis=1, keepdims=True)).sum(1) + 1
    assert np.mean(ranks <= 10) > 0.4  # chance is 10/48 ≈ 0.21


def test_missing_lite_weights(tmp_path):
    with pytest.raises(MirageError, match="weights not found"):
        create_encoder(f"lite:{tmp_path / 'none.safetensors'}")


def test_bridge_pulls_a_row_towards_its_neighbours_other_modality():
    from mirage_core.encoders.lite import bridge

    bank = {
        "images": np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]], np.float32),
        "captions": np.array([[0, 0, 1], [0, 0.1, 0.9], [0, 1, 0]], np.float32),
    }
    bank = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in bank.items()}
    image = np.array([[1, 0, 0]], np.float32)
    moved = bridge(image, bank, "image", k=2, temperature=0.05, weight=0.5)
    np.testing.assert_allclose(np.linalg.norm(moved), 1, atol=1e-6)
    assert moved[0, 2] > 0.3 and moved[0, 0] < 1  # towards the captions of its two nearest training images
    unchanged = bridge(image, bank, "image", k=2, temperature=0.05, weight=0.0)
    np.testing.assert_allclose(unchanged, image, atol=1e-6)


def test_query_heads_in_numpy_compute_what_the_torch_heads_do(lite_encoder):
    import torch

    features = torch.randn(5, lite_encoder.text_backbone.feature_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = lite_encoder.heads.embed_text(features).numpy()
    np.testing.assert_allclose(lite_encoder.query_heads(features.numpy()), expected, atol=1e-5)
    queries = ["chest x-ray pneumothorax", "MRI of the brain"]
    fast = lite_encoder.encode_query(queries)
    heads, lite_encoder.query_heads = lite_encoder.query_heads, None  # the torch path, for comparison
    try:
        np.testing.assert_allclose(fast, lite_encoder.encode_query(queries), atol=1e-5)
    finally:
        lite_encoder.query_heads = heads


def test_one_query_is_tokenised_and_embedded_as_a_batch_would_be(lite_encoder):
    """A single query takes the short path (a copy of the Rust tokenizer, float32 heads); it must give the
    wrapper's tokens, truncation included, and their features, in float32 (a float64 query made every product
    with the float32 bank convert the bank first)."""
    backbone = lite_encoder.text_backbone
    for text in ["chest x-ray pneumothorax", "CT, axial; contrast-enhanced — liver", "word " * 400]:
        wrapped = backbone.tokenizer([text], truncation=True, max_length=backbone.max_tokens)["input_ids"][0]
        assert backbone.query_tokenizer.encode(text).ids == wrapped
        batch = backbone.tokenizer([text], truncation=True, max_length=backbone.max_tokens, return_tensors="np")
        features = backbone.query_session.run(None, {"input_ids": batch["input_ids"],
                                                     "attention_mask": batch["attention_mask"]})[0]
        np.testing.assert_array_equal(backbone([text], query=True).numpy(), features)
    assert lite_encoder.encode_query(["MRI of the brain"]).dtype == np.float32
    assert lite_encoder.query_heads(np.ones((1, backbone.feature_dim), np.float32)).dtype == np.float32
