from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import scipy.sparse as sp

from engine.bundle import FORMAT_VERSION, read_bundle, read_manifest, write_bundle
from engine.errors import BundleError

N_MEMBERS, N_ITEMS, DIM = 5, 4, 3


def parts() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    member_vectors = rng.standard_normal((N_MEMBERS, DIM)).astype(np.float32)
    item_vectors = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    index = faiss.IndexFlatIP(DIM)
    index.add(item_vectors)
    similarity = sp.csr_matrix(
        np.array([[0, 0.5, 0, 0], [0.5, 0, 0.2, 0], [0, 0.2, 0, 0], [0, 0, 0, 0]], np.float32)
    )
    return {
        "manifest": {
            "kind": "als",
            "data_fingerprint": "sha256:abc",
            "feature_snapshot": "2024-06-30",
            "metrics": {"ndcg_at_10": np.float32(0.25), "n_members": np.int64(5)},
            "params": {"factors": DIM, "regularization": 0.01, "tiers": ["gold", "silver"]},
        },
        "arrays": {
            "member_vectors": member_vectors,
            "item_vectors": item_vectors,
            "item_bias": np.arange(N_ITEMS, dtype=np.float32),
            "popularity_rank": np.array([2, 0, 1, 3], dtype=np.int64),
        },
        "sparse": {"item_similarity": similarity},
        "member_ids": [f"m{i}" for i in range(N_MEMBERS)],
        "item_ids": np.array(["sku-a", "sku-b", "sku-c", "sku-d"]),
        "indexes": {"items": index},
    }


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "model", **parts())


@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(bundle_path: Path, mmap: bool) -> None:
    given = parts()
    bundle = read_bundle(bundle_path, mmap=mmap)
    assert bundle.kind == "als"
    assert bundle.format_version == FORMAT_VERSION
    assert bundle.manifest["metrics"] == {"ndcg_at_10": 0.25, "n_members": 5}
    assert bundle.manifest["params"] == given["manifest"]["params"]
    assert bundle.manifest["data_fingerprint"] == "sha256:abc"
    assert bundle.created_at.endswith("+00:00")
    assert set(bundle.arrays) == set(given["arrays"])
    for name, array in given["arrays"].items():
        loaded = bundle.arrays[name]
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)
        assert not loaded.flags.writeable
        assert isinstance(loaded, np.memmap) == mmap
    similarity = bundle.sparse["item_similarity"]
    np.testing.assert_array_equal(
        similarity.toarray(), given["sparse"]["item_similarity"].toarray()
    )
    assert bundle.member_ids.ids.tolist() == given["member_ids"]
    assert bundle.item_ids.lookup(["sku-c"]).tolist() == [2]
    query = given["arrays"]["member_vectors"][:2]
    expected = given["indexes"]["items"].search(query, 3)
    found = bundle.indexes["items"].search(query, 3)
    np.testing.assert_array_equal(found[1], expected[1])


def test_files_load_without_pickle(bundle_path: Path) -> None:
    for npy in bundle_path.rglob("*.npy"):
        np.load(npy, allow_pickle=False)
    manifest = json.loads((bundle_path / "manifest.json").read_text())
    assert manifest["contents"]["arrays"]["item_vectors"]["file"] == "arrays/item_vectors.npy"
    assert read_manifest(bundle_path)["kind"] == "als"


def test_no_extras_is_fine(tmp_path: Path) -> None:
    given = parts()
    path = write_bundle(
        tmp_path / "minimal",
        manifest={"kind": "popularity", "created_at": "2024-07-01T00:00:00+00:00"},
        arrays={"item_scores": np.ones(N_ITEMS, np.float32)},
        member_ids=given["member_ids"],
        item_ids=given["item_ids"],
    )
    bundle = read_bundle(path)
    assert bundle.created_at == "2024-07-01T00:00:00+00:00"
    assert dict(bundle.sparse) == {}
    assert dict(bundle.indexes) == {}


def test_existing_bundle_is_kept_unless_overwrite(tmp_path: Path, bundle_path: Path) -> None:
    given = parts()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(bundle_path, **given)
    given["manifest"] = {**given["manifest"], "kind": "bpr"}
    write_bundle(bundle_path, **given, overwrite=True)
    assert read_bundle(bundle_path).kind == "bpr"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary leftovers


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_write_index(index: object, path: str) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write_index)
    with pytest.raises(BundleError, match="cannot write index 'items' \\(disk full\\)"):
        write_bundle(tmp_path / "model", **parts())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"arrays": {"member_vectors": np.zeros((4, DIM), np.float32)}},
            "member_vectors has shape \\(4, 3\\), expected 2-D with 5 rows",
        ),
        (
            {"arrays": {"item_vectors": np.zeros((N_ITEMS, DIM))}},
            "item_vectors must be float32, got float64",
        ),
        ({"arrays": {"item_bias": np.zeros((N_ITEMS, 1), np.float32)}}, "item_bias has shape"),
        (
            {"arrays": {"member_vectors": np.zeros((N_MEMBERS, 2), np.float32)}},
            "member and item vectors differ in dimension",
        ),
        (
            {"arrays": {"labels": np.array(["a", None], dtype=object)}},
            "object arrays would need pickle",
        ),
        ({"arrays": {"../escape": np.zeros(1)}}, "array name '../escape' is not allowed"),
        (
            {"sparse": {"item_similarity": sp.csr_matrix((3, 3))}},
            "item_similarity has shape \\(3, 3\\), expected \\(4, 4\\)",
        ),
        ({"sparse": {"dense": np.zeros((2, 2))}}, "must be a scipy sparse matrix"),
        ({"member_ids": ["m0", "m0", "m1", "m2", "m3"]}, "member_ids: IdMap: duplicate id 'm0'"),
        ({"manifest": {"metrics": {}}}, "manifest needs a non-empty string 'kind'"),
        ({"manifest": {"kind": "als", "format_version": 9}}, "must not set \\['format_version'\\]"),
        ({"manifest": {"kind": "als", "metrics": {"ndcg": float("nan")}}}, "not JSON-serializable"),
        (
            {"manifest": {"kind": "als", "weights": np.zeros(2)}},
            "type ndarray cannot be stored in the manifest",
        ),
    ],
)
def test_inconsistent_input_is_rejected_before_writing(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    given = parts()
    for key, value in change.items():
        given[key] = {**given[key], **value} if key == "arrays" else value
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "model", **given)
    assert not (tmp_path / "model").exists()


def test_index_must_match_the_id_map(tmp_path: Path) -> None:
    given = parts()
    small = faiss.IndexFlatIP(DIM)
    small.add(np.zeros((2, DIM), np.float32))
    given["indexes"] = {"items": small}
    with pytest.raises(BundleError, match="index 'items' holds 2 vectors, expected 4"):
        write_bundle(tmp_path / "model", **given)


# -- corruption on read ----------------------------------------------------------------------


def edit_manifest(path: Path, edit: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_missing_folder_and_manifest(tmp_path: Path, bundle_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundle folder here"):
        read_bundle(tmp_path / "nowhere")
    (bundle_path / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: manifest missing"):
        read_bundle(bundle_path)


def test_unparsable_manifest(bundle_path: Path) -> None:
    (bundle_path / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match=r"manifest\.json: unreadable manifest"):
        read_bundle(bundle_path)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (FORMAT_VERSION + 1, "newer than this engine supports"),
        (0, "no longer supported"),
        ("1", "not an integer"),
    ],
)
def test_format_version_is_checked(bundle_path: Path, version: object, message: str) -> None:
    edit_manifest(bundle_path, lambda m: m.update(format_version=version))
    with pytest.raises(BundleError, match=message):
        read_bundle(bundle_path)


def test_missing_array_file_is_named(bundle_path: Path) -> None:
    (bundle_path / "arrays" / "item_bias.npy").unlink()
    with pytest.raises(BundleError, match=r"arrays/item_bias\.npy: array 'item_bias' is missing"):
        read_bundle(bundle_path)


def test_truncated_file_is_detected(bundle_path: Path) -> None:
    target = bundle_path / "arrays" / "member_vectors.npy"
    target.write_bytes(target.read_bytes()[:-8])
    with pytest.raises(
        BundleError, match=r"member_vectors\.npy: array 'member_vectors' has \d+ bytes"
    ):
        read_bundle(bundle_path)


def test_declared_shape_must_match_the_file(bundle_path: Path) -> None:
    edit_manifest(bundle_path, lambda m: m["contents"]["arrays"]["item_bias"].update(shape=[3]))
    with pytest.raises(
        BundleError,
        match=r"item_bias\.npy: array 'item_bias' is <f4 \[4\], the manifest says <f4 \[3\]",
    ):
        read_bundle(bundle_path)


def test_replaced_id_map_is_caught_by_the_shape_checks(bundle_path: Path) -> None:
    ids_file = bundle_path / "item_ids.npy"
    np.save(ids_file, np.array(["sku-a", "sku-b", "sku-c"]))

    def declare_new_file(manifest: dict[str, Any]) -> None:
        manifest["contents"]["item_ids"].update(bytes=ids_file.stat().st_size, shape=[3])

    edit_manifest(bundle_path, declare_new_file)
    with pytest.raises(
        BundleError, match="item_vectors has shape \\(4, 3\\), expected 2-D with 3 rows"
    ):
        read_bundle(bundle_path)


def test_corrupt_npy_file(bundle_path: Path) -> None:
    bias = bundle_path / "arrays" / "item_bias.npy"
    bias.write_bytes(b"\0" * bias.stat().st_size)
    with pytest.raises(BundleError, match=r"item_bias\.npy: cannot read array 'item_bias'"):
        read_bundle(bundle_path)


def test_corrupt_index_file(bundle_path: Path) -> None:
    index_file = bundle_path / "indexes" / "items.faiss"
    index_file.write_bytes(b"\x07" * index_file.stat().st_size)
    with pytest.raises(BundleError, match=r"items\.faiss: cannot read index 'items'"):
        read_bundle(bundle_path)


def test_corrupt_sparse_components(bundle_path: Path) -> None:
    indices = bundle_path / "sparse" / "item_similarity" / "indices.npy"
    values = np.load(indices)
    values[0] = 99
    np.save(indices, values)
    with pytest.raises(BundleError, match=r"column indices fall outside 0\.\.3"):
        read_bundle(bundle_path)


def test_files_outside_the_bundle_are_refused(bundle_path: Path) -> None:
    edit_manifest(
        bundle_path, lambda m: m["contents"]["arrays"]["item_bias"].update(file="../../etc/passwd")
    )
    with pytest.raises(BundleError, match="points outside the bundle"):
        read_bundle(bundle_path)


def test_pickled_arrays_are_refused(bundle_path: Path) -> None:
    target = bundle_path / "arrays" / "popularity_rank.npy"
    np.save(target, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)

    def declare(manifest: dict[str, Any]) -> None:
        manifest["contents"]["arrays"]["popularity_rank"].update(bytes=target.stat().st_size)

    edit_manifest(bundle_path, declare)
    with pytest.raises(BundleError, match=r"cannot read array 'popularity_rank'.*allow_pickle"):
        read_bundle(bundle_path)


def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="exists and is not a bundle; refusing to replace it"):
        write_bundle(precious, **parts(), overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_bundle_folder_is_readable_by_other_processes(bundle_path: Path) -> None:
    assert bundle_path.stat().st_mode & 0o055 == 0o055
