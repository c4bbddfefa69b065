import numpy as np
import pytest
from PIL import Image

from mirage_core.arithmetic import Term, combine, compose, dual_search
from mirage_core.corpus import Record
from mirage_core.errors import QueryError
from mirage_core.index import Index

TABLE = {
    "chest x-ray": [1.0, 0.0, 0.0, 0.0],
    "bones": [0.6, 0.8, 0.0, 0.0],
    "soft tissue": [0.0, 0.0, 1.0, 0.0],
    "pacemaker": [0.0, 0.0, 0.0, 1.0],
}


def test_exact_vectors(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    result = compose(encoder, Term("chest x-ray"), [Term("bones", 0.5)], [Term("soft tissue", 2.0), Term("pacemaker")])
    q, b, s, p = (np.array(TABLE[k], dtype=np.float32) for k in ("chest x-ray", "bones", "soft tissue", "pacemaker"))
    expected_running = [q - 0.5 * b, q - 0.5 * b + 2 * s, q - 0.5 * b + 2 * s + p]
    assert [step.label for step in result.steps] == ["bones", "soft tissue", "pacemaker"]
    for step, expected in zip(result.steps, expected_running):
        np.testing.assert_allclose(step.running, expected, atol=1e-6)
    final = expected_running[-1] / np.linalg.norm(expected_running[-1])
    np.testing.assert_allclose(result.result, final, atol=1e-6)
    np.testing.assert_allclose(result.result, [0.7, -0.4, 2.0, 1.0] / np.linalg.norm([0.7, -0.4, 2.0, 1.0]), atol=1e-6)
    labels = [label for label, _ in result.path()]
    assert labels == ["query", "− bones", "+ soft tissue", "+ pacemaker", "result"]


def test_query_weight_and_vector_terms(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    result = compose(encoder, Term("chest x-ray", 3.0), add=[Term(np.array([0, 0, 0, 4.0]), 4.0, label="v")])
    np.testing.assert_allclose(result.result, np.array([3, 0, 0, 4]) / 5, atol=1e-6)
    unweighted = compose(encoder, Term("chest x-ray", 3.0), add=[Term(np.array([0, 0, 0, 4.0]), label="v")])
    np.testing.assert_allclose(unweighted.result, np.array([3, 0, 0, 1]) / np.sqrt(10), atol=1e-6)  # a unit vector


def test_cancelling_out_is_a_clear_error(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    with pytest.raises(QueryError, match="cancel out"):
        compose(encoder, Term("chest x-ray"), [Term("chest x-ray")])
    with pytest.raises(QueryError, match="cancel out"):
        combine(np.zeros(4), [], [])


def test_bad_terms(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    with pytest.raises(QueryError, match="empty"):
        compose(encoder, Term("   "))
    with pytest.raises(QueryError, match="5,000 characters"):
        compose(encoder, Term("chest x-ray"), add=[Term("x" * 5000)])
    with pytest.raises(QueryError, match="dimensions"):
        compose(encoder, Term(np.ones(3)))


def test_image_terms_and_dual_search(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    rows = np.eye(4, dtype=np.float32)
    records = [Record(id=f"r{i}", image_path="", caption=str(i)) for i in range(4)]
    index = Index(rows, rows, records, {"fingerprint": "table"})
    result = dual_search(index, encoder, Term("chest x-ray"), [Term("chest x-ray", 0.9)], [Term("pacemaker")], k=2)
    assert result.original[0].record.id == "r0"
    assert result.modified[0].record.id == "r3"
    picture = Image.new("RGB", (4, 4), (10, 0, 0))
    picture.paste((200, 0, 0), (0, 0, 2, 4))  # not one flat colour: a blank image is refused as a query
    image_result = compose(encoder, Term(picture))
    assert image_result.result.shape == (4,) and abs(np.linalg.norm(image_result.result) - 1) < 1e-6


def test_expression_reads_like_the_arithmetic(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    result = compose(encoder, Term("chest x-ray"), [Term("bones", 0.5)], [Term("soft tissue")])
    assert result.expression() == "chest x-ray − 0.5×bones + soft tissue"
    assert compose(encoder, Term("chest x-ray")).expression() == "chest x-ray"


def test_a_preset_is_judged_by_the_concept_it_adds():
    from mirage_core.arithmetic import PRESETS, SHIPPING_LIFT, Preset
    from mirage_core.corpus import Record
    from mirage_core.index import Hit

    def hit(caption, modality="X-ray", region="chest"):
        return Hit(Record("r", "", caption, modality=modality, region=region), 0.5, 0)

    pacemaker = Preset("p", "Chest X-ray", ("No foreign bodies",), ("Pacemaker",), caption=r"pacemaker|lead")
    assert pacemaker.matches(hit("Dual-chamber pacemaker leads")) and not pacemaker.matches(hit("clear lungs"))
    swap = Preset("s", "Brain CT", ("CT",), ("MRI",), modality="MRI", region="head")
    assert swap.matches(hit("axial", "MRI", "head")) and not swap.matches(hit("axial", "MRI", "spine"))
    assert len({p.name for p in PRESETS}) == len(PRESETS) and SHIPPING_LIFT >= 1
    assert all(p.caption or p.modality for p in PRESETS)  # every shipped preset says what it adds


def test_the_arithmetic_benchmark_lists_every_preset(lite_index_dir, lite_encoder):
    from mirage_core.arithmetic import PRESETS
    from mirage_core.bench.arithmetic import bench_arithmetic
    from mirage_core.index import load_index

    result = bench_arithmetic(load_index(lite_index_dir), lite_encoder, k=8)
    assert [p["preset"] for p in result.presets] == [p.name for p in PRESETS]
    for row in result.presets:
        assert 0 <= row["before"] <= 8 and 0 <= row["after"] <= 8 and row["moved"] == (row["after"] > row["before"])
    assert "before" in result.describe() and result.to_dict()["k"] == 8


def test_each_step_is_named_in_plain_words(table_encoder):
    encoder = table_encoder(TABLE, dim=4)
    result = compose(encoder, Term("chest x-ray"), [Term("bones")], [Term("soft tissue")])
    assert result.step_names() == ["start: chest x-ray", "after subtracting bones", "after adding soft tissue",
                                   "result"]
