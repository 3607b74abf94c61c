"""fleet.sona, pure numpy (no Redis): LoRA gradients against finite differences, the policy head's
update, clipping, SVD truncation, EWC++ retention against naive fine-tuning, micro merging, the
reward, the learning-state codec, features and arms."""

from __future__ import annotations

import zlib

import msgpack
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fleet.sona import codec
from fleet.sona.consolidate import FitSettings, Replay, consolidate, data_loss
from fleet.sona.ewc import EwcState, batch_fisher
from fleet.sona.features import N_STATS, Featurizer, HashEmbedder, pattern_vector
from fleet.sona.lora import LowRank
from fleet.sona.policy import PolicyHead, arms_from, bce, sigmoid
from fleet.sona.reward import reward
from fleet.sona.store import Base, Micro
from fleet.trm.strategy import Strategy


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """A benchmark may share the machine: tiny matrices are faster on one BLAS thread."""
    with threadpool_limits(1):
        yield


def _lowrank64(rng: np.random.Generator, k: int, d: int, rank: int, scale: float) -> LowRank:
    return LowRank(rng.normal(0, 1 / np.sqrt(d), (rank, d)), rng.normal(0, 0.5, (k, rank)), scale)


def _head64(seed: int = 0, k: int = 4, d: int = 10) -> PolicyHead:
    """A float64 head whose W0, base and micro are all non-zero."""
    rng = np.random.default_rng(seed)
    return PolicyHead(rng.normal(0, 0.3, (k, d)), _lowrank64(rng, k, d, 3, 0.7), _lowrank64(rng, k, d, 2, 1.3))


def _x(seed: int = 1, d: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1 / np.sqrt(d), d)


# --------------------------------------------------------------------------- 1. gradient check


def _central_differences(head: PolicyHead, which: str, x: np.ndarray, arm: int, r: float,
                         h: float = 1e-6) -> np.ndarray:
    param = getattr(head.micro, which)
    out = np.zeros_like(param)
    for idx in np.ndindex(param.shape):
        keep = param[idx]
        param[idx] = keep + h
        up = head.loss(x, arm, r)
        param[idx] = keep - h
        down = head.loss(x, arm, r)
        param[idx] = keep
        out[idx] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize("arm,r", [(0, 0.8), (2, 0.0), (3, 1.0)])
def test_lowrank_grads_match_central_differences_of_the_policy_loss(arm, r):
    head, x = _head64(), _x()
    assert head.micro.a.dtype == np.float64 and head.micro.b.dtype == np.float64
    z = head.logits(x)[arm]
    assert 0.05 < float(sigmoid(z)) < 0.95  # away from bce's clipping, so FD sees the true loss
    g = float(sigmoid(z)) - r
    ga, gb = head.micro.grads(x, arm, g)
    fd_a = _central_differences(head, "a", x, arm, r)
    fd_b = _central_differences(head, "b", x, arm, r)
    assert np.abs(fd_a).max() > 1e-3 and np.abs(fd_b).max() > 1e-3
    np.testing.assert_allclose(ga, fd_a, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(gb, fd_b, rtol=1e-4, atol=1e-9)
    # only the chosen arm's row of B gets a gradient
    assert np.all(gb[np.arange(head.arms) != arm] == 0)


def test_lowrank_grads_on_float32_adapters_agree_with_float64():
    head, x = _head64(), _x()
    arm, g = 1, 0.37
    ga64, gb64 = head.micro.grads(x, arm, g)
    m32 = LowRank(head.micro.a.astype(np.float32), head.micro.b.astype(np.float32), head.micro.scale)
    ga32, gb32 = m32.grads(x.astype(np.float32), arm, g)
    np.testing.assert_allclose(ga32, ga64, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gb32, gb64, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------- 2. a fresh adapter moves


def test_a_fresh_adapter_gets_a_b_gradient_first_and_an_a_gradient_after():
    head = PolicyHead.fresh(4, 10, base_rank=3, base_scale=1.0, micro_rank=2, micro_scale=1.0, seed=3)
    assert np.all(head.micro.b == 0)
    x, arm, r = _x(), 2, 1.0
    z0 = head.logits(x).copy()
    g = float(sigmoid(z0[arm])) - r
    ga, gb = head.micro.grads(x, arm, g)
    assert np.all(ga == 0)  # B = 0: ∂z/∂A = s·B[arm]ᵀxᵀ vanishes
    assert np.linalg.norm(gb[arm]) > 1e-3  # but ∂z/∂B[arm] = s·A·x does not
    head.update(x, arm, r, lr=0.5, clip=1.0)
    assert np.linalg.norm(head.micro.b[arm]) > 1e-3
    z1 = head.logits(x)
    assert z1[arm] > z0[arm] + 1e-3  # the first step already changed the arm's score
    np.testing.assert_array_equal(np.delete(z1, arm), np.delete(z0, arm))
    ga2, _ = head.micro.grads(x, arm, float(sigmoid(z1[arm])) - r)
    assert np.linalg.norm(ga2) > 1e-4


# ----------------------------------------------------------------------------- 3. update moves


@pytest.mark.parametrize("r,direction", [(1.0, 1), (0.0, -1)])
def test_update_moves_sigma_of_the_arm_toward_the_reward(r, direction):
    head, x, arm = _head64(), _x(), 1
    p0 = float(sigmoid(head.logits(x)[arm]))
    stats = head.update(x, arm, r, lr=0.5, clip=1.0)
    p1 = float(sigmoid(head.logits(x)[arm]))
    assert direction * (p1 - p0) > 1e-4
    assert stats["loss_after"] < stats["loss_before"]
    assert stats["loss_before"] == pytest.approx(bce(p0, r))


def test_repeated_updates_converge_sigma_to_a_soft_reward():
    head = PolicyHead.fresh(4, 10, base_rank=3, base_scale=1.0, micro_rank=2, micro_scale=1.0, seed=5)
    x = _x(2) * 3  # ‖x‖ ≈ 3
    for _ in range(300):
        stats = head.update(x, 0, 0.8, lr=0.5, clip=1.0)
    assert abs(float(sigmoid(head.logits(x)[0])) - 0.8) < 0.05
    assert stats["loss_after"] <= stats["loss_before"]
    assert stats["loss_after"] == pytest.approx(bce(0.8, 0.8), abs=0.02)  # the minimum of the soft BCE


# -------------------------------------------------------------------------------- 4. clipping


def test_clipped_step_moves_the_parameters_by_exactly_lr_times_clip():
    head, x = _head64(), _x()
    ga, gb = head.micro.grads(x, 2, float(sigmoid(head.logits(x)[2])) - 0.0)
    a0, b0 = head.micro.a.copy(), head.micro.b.copy()
    lr, clip = 0.5, 1e-4
    norm = head.micro.step(ga, gb, lr, clip)
    assert norm == pytest.approx(np.sqrt(np.sum(ga ** 2) + np.sum(gb ** 2)))
    assert norm > 100 * clip
    moved = np.sqrt(np.sum((head.micro.a - a0) ** 2) + np.sum((head.micro.b - b0) ** 2))
    assert moved == pytest.approx(lr * clip, rel=1e-6)


def test_an_unclipped_step_is_plain_sgd():
    head, x = _head64(), _x()
    ga, gb = head.micro.grads(x, 0, 0.3)
    a0, b0 = head.micro.a.copy(), head.micro.b.copy()
    head.micro.step(ga, gb, 0.1, 1e6)
    np.testing.assert_allclose(head.micro.a, a0 - 0.1 * ga, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(head.micro.b, b0 - 0.1 * gb, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------- 5. from_delta


@pytest.mark.parametrize("rank", [3, 4, 8])
def test_from_delta_reconstructs_a_rank3_matrix_exactly(rank):
    rng = np.random.default_rng(11)
    m = rng.normal(size=(6, 3)) @ rng.normal(size=(3, 20))
    lr, residual = LowRank.from_delta(m, rank, 0.5)
    assert lr.rank == rank and lr.a.shape == (rank, 20) and lr.b.shape == (6, rank)
    assert residual < 1e-6
    np.testing.assert_allclose(lr.delta(), m, rtol=0, atol=1e-5 * np.abs(m).max())


def test_from_delta_truncation_residual_matches_numpy():
    rng = np.random.default_rng(12)
    m = rng.normal(size=(12, 256))
    lr, residual = LowRank.from_delta(m, 8, 2.0)
    s = np.linalg.svd(m, compute_uv=False)
    assert residual == pytest.approx(np.linalg.norm(s[8:]) / np.linalg.norm(s), rel=1e-9)
    assert 0.1 < residual < 1  # a real truncation
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    best = (u[:, :8] * s[:8]) @ vt[:8]
    np.testing.assert_allclose(lr.delta(), best, atol=1e-4)
    assert np.linalg.norm(m - lr.delta()) / np.linalg.norm(m) == pytest.approx(residual, rel=1e-4)


def test_from_delta_of_zero_has_zero_residual():
    lr, residual = LowRank.from_delta(np.zeros((3, 5)), 2, 1.0)
    assert residual == 0.0 and np.all(lr.delta() == 0)


# ------------------------------------------------------------------------------------ 6. EWC

D, K = 16, 2


def _task(centre: np.ndarray, n: int, rewards: tuple[float, float], rng: np.random.Generator) -> Replay:
    x = centre + 0.3 * rng.normal(size=(n, D)) / np.sqrt(D)
    x[:, -1] = 1.0
    arms = np.arange(n) % 2
    return Replay(x, arms, np.asarray(rewards)[arms])


@pytest.fixture(scope="module")
def two_tasks():
    """Task A and B over overlapping clusters (cosine 0.8) with opposite rewards per arm, and the
    base consolidated on A."""
    rng = np.random.default_rng(0)
    c_a = rng.normal(size=D)
    c_a /= np.linalg.norm(c_a)
    other = rng.normal(size=D)
    other -= (other @ c_a) * c_a
    other /= np.linalg.norm(other)
    c_b = 0.8 * c_a + 0.6 * other
    assert c_a @ c_b >= 0.7
    task_a, held_a = _task(c_a, 200, (0.9, 0.1), rng), _task(c_a, 200, (0.9, 0.1), rng)
    task_b = _task(c_b, 200, (0.1, 0.9), rng)
    w0 = np.zeros((K, D))
    start = LowRank(np.zeros((2, D)), np.zeros((K, 2)), 1.0)
    after_a = consolidate(w0, start, EwcState.empty(K, D), [], task_a, FitSettings(lam=0.0, steps=300, base_rank=2))
    return w0, after_a, held_a, task_b


def _forgetting(two_tasks, lam: float) -> tuple[float, float, float]:
    """(increase of held-out A loss, B loss before, B loss after) for a B-only consolidation."""
    w0, after_a, held_a, task_b = two_tasks
    loss_a = data_loss(w0, after_a.base.delta(), held_a)[0]
    got = consolidate(w0, after_a.base, after_a.ewc, [], task_b, FitSettings(lam=lam, steps=300, base_rank=2))
    return (data_loss(w0, got.base.delta(), held_a)[0] - loss_a, data_loss(w0, after_a.base.delta(), task_b)[0],
            data_loss(w0, got.base.delta(), task_b)[0])


def test_task_a_is_learned_first(two_tasks):
    w0, after_a, held_a, _ = two_tasks
    assert data_loss(w0, after_a.base.delta(), held_a)[0] < 0.4  # chance is log 2 ≈ 0.693
    assert after_a.ewc.fisher.max() > 0


def test_ewc_retains_the_old_task_where_naive_fine_tuning_forgets(two_tasks):
    # measured: naive +1.31 nats on held-out A; λ=50 +0.059; λ=500 +0.0052
    naive, b_before, b_naive = _forgetting(two_tasks, 0.0)
    ewc50, _, b_ewc50 = _forgetting(two_tasks, 50.0)
    ewc500, _, _ = _forgetting(two_tasks, 500.0)
    assert naive > 1.0  # naive fine-tuning on B wipes A out
    assert b_naive < 0.4 < b_before  # (because it really learned B)
    assert ewc50 < 0.1 * naive
    assert ewc500 < ewc50
    assert b_ewc50 < b_before  # EWC still learned something of B


def _blocks(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """K random symmetric positive semi-definite d×d blocks."""
    m = rng.normal(size=(k, d, d))
    return np.einsum("kij,klj->kil", m, m) / d


def test_ewc_advance_formula():
    rng = np.random.default_rng(4)
    old = EwcState(_blocks(rng, K, D).astype(np.float32), rng.random((K, D)).astype(np.float32))
    hat, anchor = _blocks(rng, K, D), rng.normal(size=(K, D))
    new = old.advance(hat, anchor, 0.3)
    np.testing.assert_allclose(new.fisher, 0.3 * hat + 0.7 * old.fisher, rtol=1e-5)
    np.testing.assert_allclose(new.anchor, anchor, rtol=1e-6)
    diff = rng.normal(size=(K, D))
    theta = anchor + diff
    f64, d64 = new.fisher.astype(np.float64), theta - new.anchor.astype(np.float64)
    by_hand = 0.5 * 4.0 * sum(d64[a] @ f64[a] @ d64[a] for a in range(K))
    assert new.penalty(theta, 4.0) == pytest.approx(by_hand, rel=1e-5)
    np.testing.assert_allclose(new.grad(theta, 4.0), 4.0 * np.stack([f64[a] @ d64[a] for a in range(K)]), rtol=1e-5)
    assert new.curvature() == pytest.approx(max(np.linalg.eigvalsh(b)[-1] for b in f64), rel=1e-5)


def test_batch_fisher_two_samples_by_hand():
    logits = np.array([0.0, np.log(3.0)])  # σ = 1/2 and 3/4
    x = np.array([[1.0, 2.0, 0.0], [2.0, -1.0, 3.0]])
    got = batch_fisher(logits, x, np.array([1, 1]), 3)
    # both samples on arm 1: (0.25·x1·x1ᵀ + 0.1875·x2·x2ᵀ) / 2; the other arms' blocks stay zero
    x1, x2 = x
    np.testing.assert_allclose(got[1], (0.25 * np.outer(x1, x1) + 0.1875 * np.outer(x2, x2)) / 2)
    assert not got[0].any() and not got[2].any()
    split = batch_fisher(logits, x, np.array([0, 2]), 3)
    np.testing.assert_allclose(split[0], 0.25 * np.outer(x1, x1) / 2)
    np.testing.assert_allclose(split[2], 0.1875 * np.outer(x2, x2) / 2)
    assert not split[1].any()


# ------------------------------------------------------------------------ 7. merging micros


def test_consolidate_merges_the_mean_micro_delta_into_the_base():
    rng = np.random.default_rng(21)
    k, d = 4, 12
    base = _lowrank64(rng, k, d, 2, 0.8)
    micros = [_lowrank64(rng, k, d, 2, 1.0).delta() for _ in range(3)]
    w0 = rng.normal(size=(k, d))
    ewc = EwcState(_blocks(rng, k, d).astype(np.float32), rng.random((k, d)).astype(np.float32))
    empty = Replay.concat([], d)
    got = consolidate(w0, base, ewc, micros, empty, FitSettings(lam=0.0, steps=50, base_rank=2, base_scale=1.5))
    theta0 = base.delta() + np.mean(micros, axis=0)
    u, s, vt = np.linalg.svd(theta0, full_matrices=False)
    np.testing.assert_allclose(got.base.delta(), (u[:, :2] * s[:2]) @ vt[:2], atol=1e-5)
    assert got.base.scale == 1.5 and got.base.rank == 2
    assert got.report["agents_merged"] == 3 and got.report["samples"] == 0
    assert got.report["svd_residual"] == pytest.approx(np.linalg.norm(s[2:]) / np.linalg.norm(s), abs=1e-5)
    np.testing.assert_array_equal(got.ewc.fisher, ewc.fisher)  # no data: the Fisher is unchanged
    np.testing.assert_allclose(got.ewc.anchor, got.base.delta(), atol=1e-6)


# ---------------------------------------------------------------------------------- 8. reward


def _report(**over):
    report = {"tests_kept": 3, "rejected": [{"reason": "failed"}],
              "coverage_before": {"lines_total": 40, "lines_covered": 10, "branches_total": 10, "branches_covered": 0},
              "coverage_after": {"lines_total": 40, "lines_covered": 30, "branches_total": 10, "branches_covered": 5},
              "reruns": 3, "final_runs_passed": 2, "mutation": {"tested": 10, "killed": 6}}
    report.update(over)
    return report


def test_reward_by_hand_with_mutation():
    # before 10/50 = 0.2, after 35/50 = 0.7, gain 0.5/0.8 = 0.625; pass 3/4; stability 2/3; mutation 0.6
    expected = (0.45 * 0.625 + 0.2 * 0.75 + 0.15 * (2 / 3) + 0.2 * 0.6) / 1.0
    assert reward(_report()) == pytest.approx(expected)
    assert reward(_report()) == pytest.approx(0.65125)


@pytest.mark.parametrize("mutation", [None, {}, {"tested": 0, "killed": 0}])
def test_reward_leaves_unmeasured_mutation_out(mutation):
    expected = (0.45 * 0.625 + 0.2 * 0.75 + 0.15 * (2 / 3)) / 0.8
    assert reward(_report(mutation=mutation)) == pytest.approx(expected)


def test_reward_is_zero_without_kept_tests():
    assert reward(_report(tests_kept=0)) == 0.0
    assert reward({"tests_kept": 0}) == 0.0


def test_reward_edges_stay_in_the_unit_interval():
    full = {"lines_total": 5, "lines_covered": 5, "branches_total": 0, "branches_covered": 0}
    assert reward(_report(coverage_before=full, coverage_after=full, rejected=[], final_runs_passed=3,
                          mutation={"tested": 4, "killed": 4})) == pytest.approx(1.0)
    worse = _report(coverage_after={"lines_total": 40, "lines_covered": 0, "branches_total": 10,
                                    "branches_covered": 0}, final_runs_passed=0, mutation={"tested": 3, "killed": 0})
    assert reward(worse) == pytest.approx(0.2 * 0.75)  # coverage fell: gain 0, not negative
    empty = {"lines_total": 0, "branches_total": 0}
    rng = np.random.default_rng(0)
    for _ in range(200):
        lines, branches = rng.integers(0, 50, 2)
        cov = lambda: {"lines_total": int(lines), "lines_covered": int(rng.integers(0, lines + 1)),  # noqa: E731
                       "branches_total": int(branches), "branches_covered": int(rng.integers(0, branches + 1))}
        reruns = int(rng.integers(0, 4))
        tested = int(rng.integers(0, 5))
        r = reward(_report(tests_kept=int(rng.integers(0, 5)), rejected=[{}] * int(rng.integers(0, 4)),
                           coverage_before=cov() if lines + branches else empty, coverage_after=cov(),
                           reruns=reruns, final_runs_passed=int(rng.integers(0, reruns + 1)),
                           mutation={"tested": tested, "killed": int(rng.integers(0, tested + 1))}))
        assert 0.0 <= r <= 1.0


# ----------------------------------------------------------------------------------- 9. codec


def _micro_blob() -> tuple[Micro, bytes]:
    rng = np.random.default_rng(0)
    micro = Micro(LowRank.fresh(6, 32, 2, 1.0, np.random.default_rng(1)), 7, "job-1", 3, 5)
    micro.adapter.b[:] = rng.normal(size=micro.adapter.b.shape)
    return micro, micro.blob()


def test_micro_and_base_round_trip():
    micro, blob = _micro_blob()
    back = Micro.from_blob(blob)
    np.testing.assert_array_equal(back.adapter.a, micro.adapter.a)
    np.testing.assert_array_equal(back.adapter.b, micro.adapter.b)
    assert back.adapter.a.dtype == np.float32
    assert (back.version, back.job_id, back.base_version, back.updates, back.adapter.scale) == (7, "job-1", 3, 5, 1.0)
    rng = np.random.default_rng(2)
    base = Base(_lowrank64(rng, 6, 32, 3, 0.5), rng.normal(size=(6, 32)),
                EwcState(_blocks(rng, 6, 32), rng.normal(size=(6, 32))), 4, ["focused/t0.2/zeroshot"],
                {"a1": "1-0"}, {"loss_after": 0.25, "nested": {"n": [1, 2]}})
    back = Base.from_blob(base.blob())
    np.testing.assert_allclose(back.adapter.delta(), base.adapter.delta(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(back.ewc.fisher, base.ewc.fisher.astype(np.float32))
    np.testing.assert_array_equal(back.w0, base.w0.astype(np.float32))
    assert (back.version, back.arms, back.cursors, back.report) == (4, base.arms, base.cursors, base.report)
    assert codec.raw_size(blob) > 0


@pytest.mark.parametrize("cut", [1, 10, 0.5, -1])
def test_truncated_blobs_are_corrupt(cut):
    _, blob = _micro_blob()
    n = int(len(blob) * cut) if isinstance(cut, float) else cut
    with pytest.raises(codec.CorruptState):
        codec.loads(blob[:n], "micro")


def test_wrong_kind_or_format_or_garbage_is_corrupt():
    _, blob = _micro_blob()
    with pytest.raises(codec.CorruptState, match="base"):
        codec.loads(blob, "base")
    with pytest.raises(codec.CorruptState):
        Base.from_blob(blob)
    other = zlib.compress(msgpack.packb({"format": 2, "kind": "micro", "a": 1}))
    with pytest.raises(codec.CorruptState, match="format"):
        codec.loads(other, "micro")
    for garbage in (b"", b"not zlib at all", zlib.compress(b"\xc1\xc1\xc1"), zlib.compress(msgpack.packb([1, 2])),
                    zlib.compress(msgpack.packb("micro")), bytes(range(256))):
        with pytest.raises(codec.CorruptState):
            codec.loads(garbage, "micro")


def test_array_bytes_must_match_the_shape():
    blob = zlib.compress(msgpack.packb({"format": 1, "kind": "micro", "a": {"shape": [2, 3], "f4": b"\0" * 20}}))
    with pytest.raises(codec.CorruptState, match="shape"):
        codec.loads(blob, "micro")


@pytest.mark.parametrize("field", [{"shape": [-2, -2], "f4": b"\0" * 16}, {"shape": [1], "f4": 5},
                                   {"shape": ["x"], "f4": b""}])
def test_tampered_array_descriptors_are_corrupt(field):
    blob = zlib.compress(msgpack.packb({"format": 1, "kind": "micro", "a": field}, use_bin_type=True))
    try:
        codec.loads(blob, "micro")
    except codec.CorruptState:
        return
    pytest.fail("accepted a tampered array")


# ------------------------------------------------------------------------------- 10. features

SOURCE_A = '''import math


def area(radius):
    """Area of a circle."""
    if radius < 0:
        raise ValueError("negative radius")
    return math.pi * radius * radius


def circumference(radius):
    return 2 * math.pi * radius
'''
SOURCE_A2 = SOURCE_A.replace("circumference", "diameter").replace("2 * math.pi * radius", "2 * radius")
SOURCE_B = '''from collections import Counter


class Inventory:
    def __init__(self):
        self.items = Counter()

    def add(self, sku, quantity=1):
        for _ in range(quantity):
            self.items[sku] += 1
        return self.items[sku]
'''


def test_featurizer_is_deterministic_for_a_seed():
    f1 = Featurizer(HashEmbedder(128), dim=40, seed=7)
    f2 = Featurizer(HashEmbedder(128), dim=40, seed=7)
    x1, x2 = f1.features(SOURCE_A, "geo"), f2.features(SOURCE_A, "geo")
    assert x1.shape == (40,) and x1.dtype == np.float32
    np.testing.assert_array_equal(x1, x2)
    assert x1[-1] == 1.0
    assert np.all((x1[-1 - N_STATS:-1] >= 0) & (x1[-1 - N_STATS:-1] < 1))
    other_seed = Featurizer(HashEmbedder(128), dim=40, seed=8).features(SOURCE_A, "geo")
    assert not np.allclose(other_seed[:-1 - N_STATS], x1[:-1 - N_STATS])
    np.testing.assert_array_equal(other_seed[-1 - N_STATS:], x1[-1 - N_STATS:])  # same AST statistics
    with pytest.raises(ValueError):
        Featurizer(HashEmbedder(16), dim=N_STATS + 2)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_hash_embedder_puts_similar_sources_closer():
    emb = HashEmbedder(512)
    a, a2, b = emb.embed(SOURCE_A), emb.embed(SOURCE_A2), emb.embed(SOURCE_B)
    assert a.shape == (512,) and np.any(a != 0)
    np.testing.assert_array_equal(a, emb.embed(SOURCE_A))
    assert _cos(a, a2) > 0.7
    assert _cos(a, a2) > _cos(a, b) + 0.4
    feat = Featurizer(emb, dim=64, seed=7)
    pa, pa2, pb = (pattern_vector(feat.features(s, "m")) for s in (SOURCE_A, SOURCE_A2, SOURCE_B))
    assert np.linalg.norm(pa) == pytest.approx(1.0, abs=1e-5)
    assert pa @ pa2 > pa @ pb


# ---------------------------------------------------------------------------------- 11. arms


def test_arms_are_styles_times_temperatures_times_few_shot():
    arms = arms_from({"prompt_styles": ["focused", "whole", "edge-cases"], "temperatures": [0.2, 0.7]})
    assert len(arms) == 3 * 2 * 2 == len(set(arms))
    assert arms[:2] == [Strategy("focused", 0.2, False), Strategy("focused", 0.2, True)]
    assert arms[-1] == Strategy("edge-cases", 0.7, True)
    assert len({a.name for a in arms}) == 12
    assert len(arms_from({"prompt_styles": ["whole"], "temperatures": [0.5]})) == 2
    with pytest.raises(ValueError, match="wild"):
        arms_from({"prompt_styles": ["focused", "wild"], "temperatures": [0.2]})
