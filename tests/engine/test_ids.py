from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.ids as ids_module
from engine.errors import DuplicateIdError, IdMapError, InvalidInputError, UnknownIdError
from engine.ids import IdMap


@pytest.fixture
def fruit() -> IdMap:
    return IdMap(["pear", "apple", "fig", "banana"])


def test_lookup_returns_dense_positions_and_minus_one_for_unknown(fruit: IdMap) -> None:
    assert fruit.lookup(["fig", "kiwi", "pear", "banana", "apple"]).tolist() == [2, -1, 0, 3, 1]
    assert fruit.lookup([]).tolist() == []
    assert len(fruit) == 4


def test_indices_raise_naming_the_unknown_ids(fruit: IdMap) -> None:
    assert fruit.indices(np.array(["banana", "pear"])).tolist() == [3, 0]
    with pytest.raises(UnknownIdError, match=r"2 unknown id\(s\), e.g. 'kiwi', 'lime'") as info:
        fruit.indices(["fig", "kiwi", "lime"])
    assert info.value.missing == ("kiwi", "lime")
    assert info.value.count == 2


def test_single_id_access(fruit: IdMap) -> None:
    assert fruit.index_of("banana") == 3
    assert fruit.get("banana") == 3
    assert fruit.get("bananas") == -1  # longer than every id of the map
    assert fruit.get("") == -1
    assert "fig" in fruit
    assert "kiwi" not in fruit
    assert 3 not in fruit
    with pytest.raises(UnknownIdError, match="unknown id 'kiwi'"):
        fruit.index_of("kiwi")


def test_ids_at_maps_indexes_back(fruit: IdMap) -> None:
    assert fruit.ids_at([3, 0]).tolist() == ["banana", "pear"]
    assert fruit.ids_at(np.array([[1, 2]])).tolist() == [["apple", "fig"]]
    with pytest.raises(InvalidInputError, match=r"index 4 is out of range 0\.\.3"):
        fruit.ids_at([0, 4])
    with pytest.raises(InvalidInputError, match="index -1 is out of range"):
        fruit.ids_at([-1])


def test_query_longer_than_every_id_is_not_truncated_to_a_match() -> None:
    m = IdMap(["abc", "ab"])
    assert m.lookup(["abcd", "abc", "ab", "a"]).tolist() == [-1, 0, 1, -1]
    assert m.lookup(np.array(["ab"])).tolist() == [1]  # narrower query dtype


def test_duplicate_ids_are_named_with_their_positions() -> None:
    with pytest.raises(DuplicateIdError, match=r"duplicate id 'b' at positions 1 and 3"):
        IdMap(["a", "b", "c", "b"])


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([1, 2, 3]), "ids must be strings, got dtype int64"),
        (np.array([b"a", b"b"]), "ids must be strings"),
        (np.array(["a", None], dtype=object), "id at position 1 is None"),
        (["a", ""], "id at position 1 is an empty string"),
        ("abc", "got the single string 'abc'"),
        (np.array([["a"], ["b"]]), "expected a 1-D sequence"),
    ],
)
def test_bad_ids_are_rejected(ids: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        IdMap(ids)  # type: ignore[arg-type]


def test_object_and_string_dtype_arrays_are_accepted() -> None:
    from_object = IdMap(np.array(["x", "yy"], dtype=object))
    from_stringdtype = IdMap(np.array(["x", "yy"], dtype=np.dtypes.StringDType()))
    assert from_object == from_stringdtype == IdMap(["x", "yy"])
    assert from_object.lookup(np.array(["yy"], dtype=object)).tolist() == [1]


def test_map_does_not_freeze_or_alias_the_callers_array() -> None:
    source = np.array(["a", "b"])
    m = IdMap(source)
    source[0] = "z"
    assert source.flags.writeable
    assert m.ids.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="read-only"):
        m.ids[0] = "q"


def test_empty_map() -> None:
    m = IdMap([])
    assert len(m) == 0
    assert m.lookup(["a"]).tolist() == [-1]
    assert m.get("a") == -1


def test_save_and_load_round_trip(tmp_path: Path, fruit: IdMap) -> None:
    path = fruit.save(tmp_path / "fruit.npy")
    for mmap in (False, True):
        loaded = IdMap.load(path, mmap=mmap)
        assert loaded == fruit
        assert loaded.lookup(["fig", "kiwi"]).tolist() == [2, -1]
    # The file is a plain .npy readable without pickle.
    assert np.load(path, allow_pickle=False).tolist() == ["pear", "apple", "fig", "banana"]


def test_load_rejects_corrupt_files_naming_them(tmp_path: Path, fruit: IdMap) -> None:
    missing = tmp_path / "none.npy"
    with pytest.raises(IdMapError, match=r"none\.npy: id map file not found"):
        IdMap.load(missing)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    with pytest.raises(IdMapError, match=r"garbage\.npy: cannot read id map"):
        IdMap.load(garbage)
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(fruit.save(tmp_path / "full.npy").read_bytes()[:-7])
    with pytest.raises(IdMapError, match=r"truncated\.npy"):
        IdMap.load(truncated)
    numbers = tmp_path / "numbers.npy"
    np.save(numbers, np.arange(3))
    with pytest.raises(IdMapError, match=r"numbers\.npy: an id map is a 1-D unicode array"):
        IdMap.load(numbers)
    duplicated = tmp_path / "dup.npy"
    np.save(duplicated, np.array(["a", "a"]))
    with pytest.raises(IdMapError, match=r"dup\.npy: IdMap: duplicate id 'a'"):
        IdMap.load(duplicated)


def test_hash_collisions_fall_back_to_another_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    real_hash = ids_module._hash

    def colliding_on_seed_zero(ids: np.ndarray, seed: int) -> np.ndarray:
        hashed = real_hash(ids, seed)
        return np.zeros_like(hashed) if seed == 0 else hashed

    monkeypatch.setattr(ids_module, "_hash", colliding_on_seed_zero)
    m = IdMap(["a", "b", "c", "d"])
    assert m.lookup(["d", "c", "b", "a", "e"]).tolist() == [3, 2, 1, 0, -1]
    # With every id colliding, a duplicate that is not next to its twin is still found.
    with pytest.raises(DuplicateIdError, match="duplicate id 'a' at positions 0 and 2"):
        IdMap(["a", "b", "a"])


# Ids of any unicode text; numpy's fixed-width strings cannot keep trailing NUL characters.
_ids = st.text(min_size=1, max_size=12).filter(lambda s: not s.endswith("\x00"))


@settings(max_examples=60, deadline=None)
@given(known=st.lists(_ids, unique=True, max_size=40), probes=st.lists(_ids, max_size=40))
def test_lookup_agrees_with_a_dict(known: list[str], probes: list[str]) -> None:
    m = IdMap(known)
    reference = {external: i for i, external in enumerate(known)}
    assert m.lookup(known).tolist() == list(range(len(known)))
    assert m.lookup(probes).tolist() == [reference.get(p, -1) for p in probes]
    assert [m.get(p) for p in probes] == [reference.get(p, -1) for p in probes]
