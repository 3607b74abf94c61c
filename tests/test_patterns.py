"""fleet.sona.patterns: exemplar extraction, spherical k-means, pattern consolidation, retrieval,
usage confidence, fading and the msgpack wire format."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import pytest

from fleet.sona.patterns import (
    FORMAT, Pattern, Sample, build_patterns, dumps, exemplar_from, fade, kmeans_pp, loads,
    record_use, retrieve,
)

# ------------------------------------------------------------------------------------ helpers

TWO_ASSERTS = "def test_two():\n    assert f(1) == 2\n    assert f(2) == 3"
MODULE = f'''import pytest
from mod import f


def helper():
    assert f(0) == 1
    assert f(1) == 2
    assert f(2) == 3


def test_one():
    assert f(1) == 2


{TWO_ASSERTS}


def test_no_assert():
    f(1)
    f(2)


def test_oversized():
{"".join(f"    assert f({i}) == {i + 1}{chr(10)}" for i in range(20))}

async def test_async():
    assert f(1) == 2
    assert f(1) == 2
    assert f(1) == 2


class TestInClass:
    def test_method(self):
        assert f(1) == 2
        assert f(1) == 2
        assert f(1) == 2
'''


def _test_source(name: str, asserts: int) -> str:
    """A pytest module with one test ``name`` holding ``asserts`` assert lines."""
    body = "".join(f"    assert {name}_value({i}) == {i}\n" for i in range(asserts))
    return f"def test_{name}():\n{body}"


def _sample(job: str, emb, reward: float, *, asserts: int = 1, agent: str = "a1", module: str | None = None,
            test_module: str | None = None) -> Sample:
    return Sample(job_id=job, agent_id=agent, module=module or f"pkg.{job}", embedding=np.asarray(emb, float),
                  reward=reward, test_module=_test_source(job, asserts) if test_module is None else test_module)


def _pattern(pid: str, centroid, *, confidence: float = 0.5, uses: int = 0, exemplar: str = "x") -> Pattern:
    c = np.asarray(centroid, dtype=np.float32)
    return Pattern(pattern_id=pid, centroid=c / np.linalg.norm(c), exemplar=exemplar, module="m",
                   reward_mean=0.8, reward_n=1, uses=uses, use_reward_sum=confidence * uses,
                   confidence=confidence)


def _blobs(rng: np.random.Generator, per: int = 30, dim: int = 16, noise: float = 0.05):
    """3 clusters around orthogonal directions, shuffled; returns (points, true labels)."""
    centres = np.eye(dim)[:3] * np.array([[1.0], [3.0], [0.5]])  # different norms: normalised internally
    truth = np.repeat(np.arange(3), per)
    points = centres[truth] + rng.normal(scale=noise, size=(3 * per, dim)) * np.linalg.norm(centres[truth], axis=1,
                                                                                              keepdims=True)
    order = rng.permutation(len(truth))
    return points[order], truth[order]


# ---------------------------------------------------------------------------------- exemplar_from


def test_exemplar_picks_most_asserts_among_eligible_top_level_tests():
    # helper (not a test), test_oversized (> 15 lines), test_no_assert, async and class methods all lose
    assert exemplar_from(MODULE) == TWO_ASSERTS


def test_exemplar_max_lines_admits_the_longer_test():
    got = exemplar_from(MODULE, max_lines=30)
    assert got is not None and got.startswith("def test_oversized():") and got.count("assert") == 20


def test_exemplar_tie_goes_to_the_shorter_test():
    src = ("def test_long():\n    x = 1\n    y = 2\n    assert x\n    assert y\n\n"
           "def test_short():\n    assert 1\n    assert 2\n")
    assert exemplar_from(src) == "def test_short():\n    assert 1\n    assert 2"


def test_exemplar_includes_decorators_and_accepts_pytest_raises_only():
    src = ('import pytest\n\n@pytest.mark.parametrize("v", [1,\n    2])\n@pytest.mark.slow\n'
           "def test_raises(v):\n    with pytest.raises(ValueError):\n        int('x')\n")
    assert exemplar_from(src) == ('@pytest.mark.parametrize("v", [1,\n    2])\n@pytest.mark.slow\n'
                                  "def test_raises(v):\n    with pytest.raises(ValueError):\n        int('x')")
    assert exemplar_from(src, max_lines=4) is None  # the decorators count toward the length


@pytest.mark.parametrize("src", ["def test_x(:\n    assert 1\n", "", "def helper():\n    assert 1\n",
                                 "def test_x():\n    print(1)\n", "x = 1\0\n"])
def test_exemplar_none_for_unparsable_or_no_candidate(src):
    assert exemplar_from(src) is None


# -------------------------------------------------------------------------------------- kmeans_pp


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True if labelings a and b group the points identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_three_separated_clusters():
    points, truth = _blobs(np.random.default_rng(7))
    centroids, labels = kmeans_pp(points, 3, np.random.default_rng(1))
    assert centroids.shape == (3, 16) and centroids.dtype == np.float32 and labels.shape == truth.shape
    assert _same_partition(labels, truth)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-6)
    for j in range(3):  # each centroid points at its cluster's generating axis
        axis = int(np.argmax(np.abs(centroids[j])))
        assert set(truth[labels == j].tolist()) == {axis} and centroids[j, axis] > 0.99


def test_kmeans_deterministic_for_a_seed():
    points, _ = _blobs(np.random.default_rng(3), noise=0.6)  # overlapping: seeding matters
    first = kmeans_pp(points, 4, np.random.default_rng(42))
    second = kmeans_pp(points, 4, np.random.default_rng(42))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_kmeans_clips_k_to_distinct_points():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 1.0])
    points = np.stack([a, 2 * a, b, a, 5 * b])  # scaled copies are the same direction
    centroids, labels = kmeans_pp(points, 5, np.random.default_rng(0))
    assert centroids.shape == (2, 3)
    assert len(set(labels[[0, 1, 3]].tolist())) == 1 and len(set(labels[[2, 4]].tolist())) == 1
    assert labels[0] != labels[2]


def test_kmeans_every_cluster_non_empty_and_rejects_zero_rows():
    points, _ = _blobs(np.random.default_rng(5), per=4)
    _, labels = kmeans_pp(points, 8, np.random.default_rng(0))
    assert np.all(np.bincount(labels, minlength=8) > 0)
    with pytest.raises(ValueError, match="non-zero"):
        kmeans_pp(np.array([[1.0, 0.0], [0.0, 0.0]]), 2, np.random.default_rng(0))


# --------------------------------------------------------------------------------- build_patterns

E1, E2 = [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]


def _near(base, eps: float):
    return np.asarray(base) + eps * np.array([0.0, 1.0, 0.0, 1.0])


def _consolidation_samples() -> list[Sample]:
    return [
        _sample("a_best", _near(E1, 0.10), 0.9, asserts=2, agent="agent-1"),
        _sample("a_other", _near(E1, 0.02), 0.6, asserts=3, agent="agent-2"),
        _sample("a_low", _near(E1, 0.01), 0.2, asserts=5),  # below min_reward
        _sample("a_empty", _near(E1, 0.00), 1.0, test_module=""),  # no exemplar
        _sample("b_only", _near(E2, 0.05), 0.8, agent="agent-3"),
    ]


def _build(samples, previous=(), *, k: int = 2, version: int = 3) -> list[Pattern]:
    return build_patterns(samples, k=k, min_reward=0.5, rng=np.random.default_rng(0), version=version,
                          previous=previous)


def test_build_filters_by_reward_and_exemplar_and_picks_best_reward():
    by_module = {p.module: p for p in _build(_consolidation_samples())}
    assert set(by_module) == {"pkg.a_best", "pkg.b_only"}
    a = by_module["pkg.a_best"]
    assert a.exemplar == exemplar_from(_test_source("a_best", 2))  # beats a_other's 3-assert test
    assert a.reward_n == 2 and a.reward_mean == pytest.approx(0.75)
    assert a.provenance == ["job:a_best", "job:a_other", "agent:agent-1", "agent:agent-2"]
    assert a.version == 3 and a.uses == 0 and a.confidence == 0.5
    assert abs(float(np.linalg.norm(a.centroid)) - 1.0) < 1e-6 and a.centroid.dtype == np.float32
    digest = hashlib.sha256(a.exemplar.encode() + b"\0a_best\0a_other").hexdigest()[:16]
    assert a.pattern_id == digest


def test_build_pattern_ids_are_stable_and_depend_on_membership():
    first = {p.module: p.pattern_id for p in _build(_consolidation_samples())}
    again = {p.module: p.pattern_id for p in _build(_consolidation_samples())}
    more = _consolidation_samples() + [_sample("a_new", _near(E1, 0.03), 0.55)]
    changed = {p.module: p.pattern_id for p in _build(more)}
    assert first == again
    assert changed["pkg.a_best"] != first["pkg.a_best"] and changed["pkg.b_only"] == first["pkg.b_only"]


def test_build_reward_tie_goes_to_member_closest_to_centroid():
    samples = [_sample("left", [1.0, 0.0], 0.7), _sample("mid", [1.0, 1.0], 0.7), _sample("right", [0.0, 1.0], 0.7)]
    (only,) = _build(samples, k=1)
    assert only.module == "pkg.mid" and only.reward_n == 3


def test_build_inherits_usage_by_exemplar_text():
    a_exemplar = exemplar_from(_test_source("a_best", 2))
    old_a = _pattern("old-a", E2, confidence=0.8, uses=4, exemplar=a_exemplar)
    old_a.use_reward_sum = 3.4
    stranger = _pattern("old-z", E1, confidence=0.1, uses=9, exemplar="def test_z():\n    assert 0")
    by_module = {p.module: p for p in _build(_consolidation_samples(), previous=[old_a, stranger], version=4)}
    a, b = by_module["pkg.a_best"], by_module["pkg.b_only"]
    assert (a.uses, a.use_reward_sum, a.confidence) == (4, 3.4, 0.8)
    assert (b.uses, b.use_reward_sum, b.confidence) == (0, 0.0, 0.5)
    assert a.version == 4 and a.reward_n == 2  # everything else is rebuilt


def test_build_caps_provenance_and_handles_nothing_kept():
    many = [_sample(f"j{i:02d}", _near(E1, 0.001 * i), 0.9, agent=f"ag{i % 3}") for i in range(30)]
    (p,) = _build(many, k=1)
    jobs = [x for x in p.provenance if x.startswith("job:")]
    assert jobs == [f"job:j{i:02d}" for i in range(20)] and p.reward_n == 30
    assert [x for x in p.provenance if x.startswith("agent:")] == ["agent:ag0", "agent:ag1", "agent:ag2"]
    assert _build([_sample("low", E1, 0.1)]) == []


# ---------------------------------------------------------------------------------------- retrieve


def test_retrieve_ranks_by_cosine_and_honours_top_k():
    pats = [_pattern("x", [1, 0, 0]), _pattern("xy", [1, 1, 0]), _pattern("z", [0, 0, 1])]
    got = retrieve(pats, np.array([7.0, 0.0, 0.0]), top_k=5, min_confidence=0.0)
    assert [p.pattern_id for p, _ in got] == ["x", "xy", "z"]
    assert [s for _, s in got] == pytest.approx([1.0, 2 ** -0.5, 0.0], abs=1e-6)
    assert [p.pattern_id for p, _ in retrieve(pats, np.array([0.0, 1.0, 0.1]), top_k=1, min_confidence=0.0)] == ["xy"]
    assert retrieve(pats, np.array([1.0, 0.0, 0.0]), top_k=0, min_confidence=0.0) == []


def test_retrieve_skips_low_confidence():
    pats = [_pattern("best-but-bad", [1, 0], confidence=0.2), _pattern("ok", [1, 1], confidence=0.6),
            _pattern("edge", [0, 1], confidence=0.4)]
    got = retrieve(pats, np.array([1.0, 0.0]), top_k=3, min_confidence=0.4)
    assert [p.pattern_id for p, _ in got] == ["ok", "edge"]
    with pytest.raises(ValueError):
        retrieve(pats, np.array([1.0, 0.0, 0.0]), top_k=3, min_confidence=0.0)


# -------------------------------------------------------------------------------- record_use, fade


def test_record_use_shrunk_mean():
    p = _pattern("p", [1, 0])
    once = record_use(p, 1.0)
    assert (once.uses, once.use_reward_sum) == (1, 1.0)
    assert once.confidence == pytest.approx((0.5 * 2 + 1.0) / 3)  # 2/3
    twice = record_use(once, 0.0)
    assert twice.confidence == pytest.approx((1.0 + 1.0) / 4)  # 0.5
    custom = record_use(twice, 0.25, prior=0.2, prior_weight=8.0)
    assert custom.confidence == pytest.approx((0.2 * 8 + 1.25) / (8 + 3))
    assert (p.uses, p.confidence, once.uses) == (0, 0.5, 1)  # copies, inputs untouched
    with pytest.raises(ValueError):
        record_use(p, 1.5)


def test_fade_drops_only_used_and_unhelpful():
    pats = [_pattern("used-bad", [1, 0], uses=10, confidence=0.2),
            _pattern("used-good", [1, 0], uses=10, confidence=0.6),
            _pattern("young-bad", [1, 0], uses=2, confidence=0.1),
            _pattern("edge-bad", [1, 0], uses=3, confidence=0.29),
            _pattern("edge-floor", [1, 0], uses=3, confidence=0.3)]
    kept = fade(pats, min_uses=3, floor=0.3)
    assert [p.pattern_id for p in kept] == ["used-good", "young-bad", "edge-floor"]


# ------------------------------------------------------------------------------------ dumps, loads


def _built() -> list[Pattern]:
    pats = _build(_consolidation_samples())
    return [record_use(pats[0], 1 / 3), pats[1]]


def test_dumps_loads_round_trip_exactly():
    pats = _built()
    back = loads(dumps(pats))
    assert back == pats and back is not pats
    assert back[0].confidence == pats[0].confidence == (1.0 + 1 / 3) / 3
    assert all(b.centroid.dtype == np.float32 and np.array_equal(b.centroid, p.centroid) for b, p in zip(back, pats))
    assert loads(dumps([])) == []
    assert msgpack.unpackb(dumps(pats))["format"] == FORMAT == 1


def _mutated(change) -> bytes:
    doc = msgpack.unpackb(dumps(_built()), raw=False)
    change(doc)
    return msgpack.packb(doc, use_bin_type=True)


@pytest.mark.parametrize("blob, message", [
    (lambda: _mutated(lambda d: d.update(format=2)), "format"),
    (lambda: dumps(_built())[:-7], "msgpack"),
    (lambda: dumps(_built())[:20], "msgpack"),
    (lambda: _mutated(lambda d: d["patterns"][0].update(dim=d["patterns"][0]["dim"] + 1)), "4\\*dim"),
    (lambda: _mutated(lambda d: d["patterns"][1].update(centroid=d["patterns"][1]["centroid"][:-4])), "4\\*dim"),
    (lambda: b"\xc1\xc1 definitely not msgpack", "msgpack"),
    (lambda: b"not msgpack", "msgpack"),
    (lambda: dumps(_built()) + b"\x00", "msgpack"),
    (lambda: msgpack.packb([1, 2, 3]), "top level"),
    (lambda: _mutated(lambda d: d["patterns"][0].update(uses=True)), "uses must be int"),
    (lambda: _mutated(lambda d: d["patterns"][0].pop("exemplar")), "expected keys"),
    (lambda: _mutated(lambda d: d["patterns"][0].update(confidence=float("nan"))), "confidence"),
])
def test_loads_rejects_malformed(blob, message):
    with pytest.raises(ValueError, match=message):
        loads(blob())
