"""Shared patterns: clusters of verified successful jobs, each with one exemplar test.

A job writes pytest tests for one Python module. Verified jobs (``Sample``) whose reward clears a bar
and whose kept test module holds a short, asserting test are clustered by the embedding of their
target with spherical k-means (cosine geometry). Each cluster becomes a ``Pattern``: a unit-norm
centroid, the exemplar test of its best member, reward statistics and provenance. Agents retrieve
the patterns nearest (by cosine) to a new target and show their exemplars to the model as few-shot
examples; the outcomes of those jobs feed back through ``record_use`` into a shrunk-mean confidence

    confidence = (prior · prior_weight + Σ rewards of jobs that used it) / (prior_weight + uses)

and ``fade`` drops patterns that have been used enough and still don't help.

Pure numpy + stdlib ``ast`` + msgpack; no Redis or Celery here.
"""

from __future__ import annotations

import ast
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import msgpack
import numpy as np

FORMAT = 1
DEFAULT_PRIOR = 0.5
PROVENANCE_CAP = 20  # job ids kept per pattern (and, separately, agent ids)
MAX_PATTERNS = 100_000  # also bounds every msgpack array length in ``loads``
MAX_DIM = 16_384
MAX_TEXT = 1 << 20  # longest string ``loads`` accepts (exemplars are short)
_EPS = 1e-12


# ---------------------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class Sample:
    """One verified job outcome. ``embedding`` is stored as a 1-D float32 copy (any norm);
    ``reward`` must lie in [0, 1]. Compared by identity (it holds an array)."""

    job_id: str
    agent_id: str
    module: str
    embedding: np.ndarray
    reward: float
    test_module: str

    def __post_init__(self) -> None:
        emb = np.array(self.embedding, dtype=np.float32)
        if emb.ndim != 1 or emb.size == 0:
            raise ValueError(f"sample {self.job_id}: embedding must be a non-empty 1-D vector")
        _check_unit_interval(self.reward, f"sample {self.job_id}: reward")
        object.__setattr__(self, "embedding", emb)


@dataclass(eq=False)
class Pattern:
    """A cluster of successful jobs and its exemplar test.

    ``pattern_id`` = first 16 hex of sha256(exemplar, sorted member job ids) (see ``pattern_id``);
    ``centroid`` is unit-norm float32; ``reward_mean``/``reward_n`` describe the member jobs;
    ``uses``/``use_reward_sum``/``confidence`` describe jobs that *used* it (see ``record_use``);
    ``provenance`` = ``job:<id>`` for up to 20 sorted member job ids, then ``agent:<id>`` for up to
    20 sorted distinct member agent ids; ``version`` is the consolidation that built it.
    Equality compares every field, the centroid by dtype, shape and values."""

    pattern_id: str
    centroid: np.ndarray
    exemplar: str
    module: str
    reward_mean: float
    reward_n: int
    uses: int = 0
    use_reward_sum: float = 0.0
    confidence: float = DEFAULT_PRIOR
    provenance: list[str] = field(default_factory=list)
    version: int = 0

    def _scalars(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "centroid")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        a, b = self.centroid, other.centroid
        same_centroid = a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
        return same_centroid and self._scalars() == other._scalars()


def _check_unit_interval(value: float, what: str) -> None:
    """ValueError unless 0 <= value <= 1 (NaN fails)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value!r}")


def _unit_rows(points: np.ndarray) -> np.ndarray:
    """``points`` (n×d, n ≥ 1) as float64 rows scaled to unit L2 norm; ValueError on a wrong shape,
    non-finite values or a zero row (it has no direction)."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected a non-empty 2-D array of points, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("points must be finite")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms <= _EPS).any():
        raise ValueError("points must be non-zero vectors")
    return x / norms


def _unit(vector: np.ndarray) -> np.ndarray:
    """A 1-D vector scaled to unit norm (float64), with ``_unit_rows``'s checks."""
    v = np.asarray(vector)
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {v.shape}")
    return _unit_rows(v[None, :])[0]


# ----------------------------------------------------------------------------------- exemplars


def _is_pytest_raises(node: ast.AST) -> bool:
    """True for a call ``pytest.raises(...)``."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "raises" and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pytest")


def _count_checks(func: ast.FunctionDef) -> tuple[int, int]:
    """(assert statements, ``pytest.raises`` calls) anywhere inside ``func``."""
    nodes = list(ast.walk(func))
    return sum(isinstance(n, ast.Assert) for n in nodes), sum(map(_is_pytest_raises, nodes))


def _line_count(func: ast.FunctionDef) -> int:
    """Lines spanned by ``func`` including its decorators."""
    first = min([func.lineno, *(d.lineno for d in func.decorator_list)])
    return func.end_lineno - first + 1


def _source_of(source: str, func: ast.FunctionDef) -> str:
    """The function's source (``ast.get_source_segment``) preceded by its decorators."""
    decorators = [f"@{ast.get_source_segment(source, d)}\n" for d in func.decorator_list]
    return "".join(decorators) + ast.get_source_segment(source, func)


def exemplar_from(test_module: str, max_lines: int = 15) -> str | None:
    """The best short test of a pytest module, or None.

    Candidates: top-level (non-async) ``def test_*`` functions spanning at most ``max_lines`` lines
    (decorators included) that contain at least one ``assert`` or ``pytest.raises``. The winner has
    the most ``assert`` statements; ties go to the shorter, then the earlier one. Returns its source
    with decorators; None if the module doesn't parse or has no candidate."""
    try:
        tree = ast.parse(test_module)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    best: tuple[int, int, int] | None = None
    winner: ast.FunctionDef | None = None
    for index, node in enumerate(tree.body):
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        asserts, raises = _count_checks(node)
        key = (-asserts, _line_count(node), index)
        if asserts + raises and key[1] <= max_lines and (best is None or key < best):
            best, winner = key, node
    return None if winner is None else _source_of(test_module, winner)


# ------------------------------------------------------------------------------------- k-means


def _cos_dist(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """1 − cosine between unit rows ``x`` and unit ``centre``, clipped to [0, 2]."""
    return np.clip(1.0 - x @ centre, 0.0, 2.0)


def _seed(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: the first centre uniformly, each next one with probability ∝ D², D being
    the cosine distance to the nearest centre chosen so far (the farthest point if all D = 0)."""
    chosen = [int(rng.integers(len(x)))]
    dist = _cos_dist(x, x[chosen[0]])
    while len(chosen) < k:
        cumulative = np.cumsum(dist ** 2)
        if cumulative[-1] > 0:
            pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        else:
            pick = int(np.argmax(dist))
        chosen.append(min(pick, len(x) - 1))
        dist = np.minimum(dist, _cos_dist(x, x[chosen[-1]]))
    return x[chosen].copy()


def _fill_empty(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels with every empty cluster re-seeded: it takes the point farthest (lowest cosine) from
    its own centroid among clusters that keep at least one other member."""
    labels = labels.copy()
    for empty in np.setdiff1d(np.arange(len(centroids)), labels):
        counts = np.bincount(labels, minlength=len(centroids))
        sims = np.einsum("ij,ij->i", x, centroids[labels])
        sims[counts[labels] < 2] = np.inf
        labels[int(np.argmin(sims))] = empty
    return labels


def _update(x: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Centroid c_j = normalise(Σ_{label i = j} x_i); a cluster whose sum vanishes keeps its old one."""
    sums = np.zeros_like(previous)
    np.add.at(sums, labels, x)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > _EPS, sums / np.maximum(norms, _EPS), previous)


def kmeans_pp(points: np.ndarray, k: int, rng: np.random.Generator,
              iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means on the L2-normalised rows of ``points`` (n×d).

    k is clipped to the number of distinct normalised rows; k-means++ seeding (``_seed``), then up
    to ``iters`` Lloyd rounds: label_i = argmax_j cos(x_i, c_j), empty clusters re-seeded from the
    farthest point (``_fill_empty``), c_j = normalise(mean of members); stops when labels repeat.
    Every returned cluster is non-empty. Deterministic given ``rng`` (used only for seeding).
    Returns (centroids k×d unit-norm float32, labels n int64)."""
    if k < 1 or iters < 1:
        raise ValueError(f"k and iters must be >= 1, got k={k}, iters={iters}")
    x = _unit_rows(points)
    k = min(k, len(np.unique(x, axis=0)))
    centroids = _seed(x, k, rng)
    labels = np.full(len(x), -1, dtype=np.int64)
    for _ in range(iters):
        new = _fill_empty(x, centroids, np.argmax(x @ centroids.T, axis=1).astype(np.int64))
        centroids = _update(x, new, centroids)
        if np.array_equal(new, labels):
            break
        labels = new
    return centroids.astype(np.float32), labels


# ------------------------------------------------------------------------------------ patterns


def pattern_id(exemplar: str, job_ids: Iterable[str]) -> str:
    """First 16 hex digits of sha256(exemplar, then "\\0" + id for each sorted job id)."""
    digest = hashlib.sha256(exemplar.encode("utf-8", "surrogatepass"))
    for job_id in sorted(job_ids):
        digest.update(b"\0" + job_id.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _provenance(members: Sequence[Sample]) -> list[str]:
    """``job:<id>`` for the first 20 sorted job ids, then ``agent:<id>`` for up to 20 sorted agents."""
    jobs = sorted(s.job_id for s in members)[:PROVENANCE_CAP]
    agents = sorted({s.agent_id for s in members})[:PROVENANCE_CAP]
    return [f"job:{j}" for j in jobs] + [f"agent:{a}" for a in agents]


def _usage_by_exemplar(previous: Iterable[Pattern]) -> dict[str, dict[str, Any]]:
    """exemplar text → usage fields of the previous pattern with that exemplar (most uses wins)."""
    usage: dict[str, dict[str, Any]] = {}
    for p in sorted(previous, key=lambda p: p.uses):
        usage[p.exemplar] = {"uses": p.uses, "use_reward_sum": p.use_reward_sum,
                             "confidence": p.confidence}
    return usage


def _make_pattern(members: list[tuple[Sample, str]], sims: np.ndarray, centroid: np.ndarray,
                  version: int, usage: dict[str, dict[str, Any]]) -> Pattern:
    """One cluster → Pattern: exemplar of the member with the highest (reward, cosine to centroid)."""
    best = max(range(len(members)), key=lambda i: (members[i][0].reward, sims[i]))
    sample, exemplar = members[best]
    samples = [s for s, _ in members]
    return Pattern(
        pattern_id=pattern_id(exemplar, (s.job_id for s in samples)),
        centroid=centroid.astype(np.float32),
        exemplar=exemplar,
        module=sample.module,
        reward_mean=math.fsum(s.reward for s in samples) / len(samples),
        reward_n=len(samples),
        provenance=_provenance(samples),
        version=version,
        **usage.get(exemplar, {}),
    )


def _eligible(samples: Iterable[Sample], min_reward: float) -> list[tuple[Sample, str]]:
    """(sample, exemplar) for samples with reward >= min_reward whose test module has an exemplar."""
    kept = []
    for s in samples:
        exemplar = exemplar_from(s.test_module) if s.reward >= min_reward else None
        if exemplar is not None:
            kept.append((s, exemplar))
    return kept


def build_patterns(samples: Sequence[Sample], *, k: int, min_reward: float,
                   rng: np.random.Generator, version: int,
                   previous: Iterable[Pattern] = ()) -> list[Pattern]:
    """Consolidate verified jobs into at most k patterns.

    Keeps samples with reward >= ``min_reward`` and an ``exemplar_from`` their test module,
    clusters their embeddings with ``kmeans_pp``, and per cluster takes the exemplar of the member
    with the highest reward (ties: highest cosine to the centroid, then input order);
    reward_mean/reward_n over the kept members. A pattern whose exemplar text equals a ``previous``
    pattern's inherits its uses/use_reward_sum/confidence. Sorted by (−reward_n, pattern_id).
    Embeddings of kept samples must share one dimension (else ValueError)."""
    kept = _eligible(samples, min_reward)
    if not kept:
        return []
    x = _unit_rows(np.stack([s.embedding for s, _ in kept]))
    centroids, labels = kmeans_pp(x, k, rng)
    sims = np.einsum("ij,ij->i", x, centroids[labels].astype(np.float64))
    usage = _usage_by_exemplar(previous)
    patterns = []
    for cluster, centroid in enumerate(centroids):
        idx = np.flatnonzero(labels == cluster)
        if idx.size:
            patterns.append(_make_pattern([kept[i] for i in idx], sims[idx], centroid, version, usage))
    return sorted(patterns, key=lambda p: (-p.reward_n, p.pattern_id))


def retrieve(patterns: Iterable[Pattern], query: np.ndarray, *, top_k: int,
             min_confidence: float) -> list[tuple[Pattern, float]]:
    """The (pattern, cosine) pairs nearest to ``query``: sim = (q/|q|) · centroid (centroids are
    unit-norm); patterns with confidence < ``min_confidence`` are skipped; highest sim first (ties:
    pattern_id); at most ``top_k``. ValueError for a zero query or a centroid of another dimension."""
    q = _unit(query)
    scored = []
    for p in patterns:
        if p.centroid.shape != q.shape:
            raise ValueError(f"pattern {p.pattern_id}: centroid dim {p.centroid.shape} != query dim {q.shape}")
        if p.confidence >= min_confidence:
            scored.append((p, float(q @ p.centroid.astype(np.float64))))
    scored.sort(key=lambda ps: (-ps[1], ps[0].pattern_id))
    return scored[:max(top_k, 0)]


def record_use(pattern: Pattern, reward: float, *, prior: float = DEFAULT_PRIOR,
               prior_weight: float = 2.0) -> Pattern:
    """A copy of ``pattern`` after one more job used it and earned ``reward`` ∈ [0, 1]:

        uses' = uses + 1,  use_reward_sum' = use_reward_sum + reward,
        confidence' = (prior · prior_weight + use_reward_sum') / (prior_weight + uses')

    i.e. the mean reward of jobs that used it, shrunk toward ``prior`` as if ``prior_weight``
    pseudo-jobs had scored ``prior``. The input pattern is not modified."""
    _check_unit_interval(reward, "reward")
    if prior_weight <= 0:
        raise ValueError(f"prior_weight must be > 0, got {prior_weight!r}")
    uses = pattern.uses + 1
    total = pattern.use_reward_sum + reward
    confidence = (prior * prior_weight + total) / (prior_weight + uses)
    return replace(pattern, uses=uses, use_reward_sum=total, confidence=confidence,
                   provenance=list(pattern.provenance))


def fade(patterns: Iterable[Pattern], *, min_uses: int, floor: float) -> list[Pattern]:
    """The patterns minus those with uses >= ``min_uses`` and confidence < ``floor`` (used enough
    to judge, and they don't help). Order is kept."""
    return [p for p in patterns if not (p.uses >= min_uses and p.confidence < floor)]


# --------------------------------------------------------------------------------- wire format

# Every key of a serialised pattern and its exact msgpack-decoded type (bool is not an int here).
_WIRE_TYPES: dict[str, type] = {
    "pattern_id": str, "dim": int, "centroid": bytes, "exemplar": str, "module": str,
    "reward_mean": float, "reward_n": int, "uses": int, "use_reward_sum": float,
    "confidence": float, "provenance": list, "version": int,
}


def _to_wire(p: Pattern) -> dict[str, Any]:
    """A pattern as a msgpack-ready map; the centroid as little-endian float32 bytes plus dim."""
    centroid = np.ascontiguousarray(p.centroid, dtype="<f4")
    if centroid.ndim != 1:
        raise ValueError(f"pattern {p.pattern_id}: centroid must be 1-D")
    return {"pattern_id": p.pattern_id, "dim": int(centroid.size), "centroid": centroid.tobytes(),
            "exemplar": p.exemplar, "module": p.module, "reward_mean": float(p.reward_mean),
            "reward_n": int(p.reward_n), "uses": int(p.uses),
            "use_reward_sum": float(p.use_reward_sum), "confidence": float(p.confidence),
            "provenance": [str(x) for x in p.provenance], "version": int(p.version)}


def dumps(patterns: Iterable[Pattern]) -> bytes:
    """msgpack of {"format": FORMAT, "patterns": [map per pattern]} (see ``_to_wire``)."""
    return msgpack.packb({"format": FORMAT, "patterns": [_to_wire(p) for p in patterns]},
                         use_bin_type=True)


def _require(ok: bool, message: str) -> None:
    """ValueError(message) unless ok."""
    if not ok:
        raise ValueError(f"malformed patterns blob: {message}")


def _check_wire_values(where: str, e: dict[str, Any]) -> None:
    """Range checks on a type-checked wire pattern (NaN fails every bounded comparison)."""
    _require(min(e["reward_n"], e["uses"], e["version"]) >= 0, f"{where}: negative count")
    _require(0.0 <= e["reward_mean"] <= 1.0, f"{where}: reward_mean outside [0, 1]")
    _require(0.0 <= e["confidence"] <= 1.0, f"{where}: confidence outside [0, 1]")
    _require(0.0 <= e["use_reward_sum"] <= e["uses"], f"{where}: use_reward_sum outside [0, uses]")
    _require(1 <= e["dim"] <= MAX_DIM, f"{where}: dim {e['dim']} outside [1, {MAX_DIM}]")
    _require(len(e["centroid"]) == 4 * e["dim"],
             f"{where}: centroid has {len(e['centroid'])} bytes, expected 4*dim = {4 * e['dim']}")
    prov = e["provenance"]
    _require(len(prov) <= 2 * PROVENANCE_CAP and all(type(x) is str for x in prov),
             f"{where}: provenance must be at most {2 * PROVENANCE_CAP} strings")


def _from_wire(index: int, e: Any) -> Pattern:
    """Validate one decoded pattern map and build the Pattern (centroid must be finite, unit-norm)."""
    where = f"pattern {index}"
    _require(type(e) is dict and set(e) == set(_WIRE_TYPES), f"{where}: expected keys {sorted(_WIRE_TYPES)}")
    for key, kind in _WIRE_TYPES.items():
        _require(type(e[key]) is kind, f"{where}: {key} must be {kind.__name__}, got {type(e[key]).__name__}")
    _check_wire_values(where, e)
    centroid = np.frombuffer(e["centroid"], dtype="<f4").astype(np.float32)
    norm = float(np.linalg.norm(centroid.astype(np.float64)))
    _require(bool(np.isfinite(centroid).all()) and abs(norm - 1.0) <= 1e-3, f"{where}: centroid not unit-norm")
    return Pattern(**{k: v for k, v in e.items() if k not in ("dim", "centroid")}, centroid=centroid)


def loads(data: bytes) -> list[Pattern]:
    """Inverse of ``dumps``. Any malformation (not bytes, not msgpack, truncated, trailing data,
    another format version, missing/extra keys, wrong types, out-of-range values, centroid byte
    length != 4·dim) raises ValueError. Declared lengths are bounded by explicit max_*_len limits."""
    _require(isinstance(data, (bytes, bytearray, memoryview)), f"expected bytes, got {type(data).__name__}")
    try:
        doc = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, max_str_len=MAX_TEXT,
                              max_bin_len=4 * MAX_DIM, max_array_len=MAX_PATTERNS,
                              max_map_len=len(_WIRE_TYPES), max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"malformed patterns blob: not valid msgpack ({exc})") from exc
    _require(type(doc) is dict and set(doc) == {"format", "patterns"},
             "top level must be a map with exactly 'format' and 'patterns'")
    _require(type(doc["format"]) is int and doc["format"] == FORMAT,
             f"unsupported format {doc['format']!r}, expected {FORMAT}")
    _require(type(doc["patterns"]) is list, "'patterns' must be a list")
    return [_from_wire(i, e) for i, e in enumerate(doc["patterns"])]
