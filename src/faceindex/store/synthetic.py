"""Deterministic synthetic faceprints whose similarity statistics match real dlib ResNet descriptors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceprintShape:
    """Parameters of the generative model ``x = normalise(m + b·B·z + w_i·W·e)``.

    ``m`` is a shared unit mean direction (faceprints of one model all live in a narrow cone),
    ``B·z`` an identity offset and ``W·e`` a per-photo offset; B and W are independent random
    rotations with power-law spectra ``λ_k ∝ k^-alpha`` (alpha 0 = isotropic). ``w_i`` varies per
    photo (log-normal, sd ``within_log_sd``) because some photos (pose, blur) land far from the
    identity centre. Scales are relative to ``|m| = 1``.
    """

    dim: int = 128
    between_alpha: float = 0.95
    within_alpha: float = 0.63
    between_scale: float = 0.369
    within_scale: float = 0.238
    within_log_sd: float = 0.184


# Fitted to 283 faces of 76 identities of lfw-devtrain (dlib HOG + 5-point + ResNet, descriptors
# L2-normalised; `python bench/bench_search.py --calibrate-lfw 280` re-measures). Under the same
# sampling design the model reproduces (real → synthetic): same-person cosine 0.951±0.016 →
# 0.953±0.016, different-person 0.839±0.033 → 0.838±0.039, participation ratio of the covariance
# 27 → 25, of the within-identity covariance 46 → 45. The slightly wider different-person spread
# makes near non-mates a little more frequent than in real data, i.e. the benchmark errs hard.
DLIB_RESNET = FaceprintShape()


def _rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A uniformly random orthonormal matrix (QR of a Gaussian, sign-fixed so it is unique)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def _sqrt_spectrum(dim: int, alpha: float) -> np.ndarray:
    lam = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
    return np.sqrt(lam / lam.sum())  # total variance 1, so `*_scale` alone sets the spread


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1)


class FaceprintGenerator:
    """Identities and photos of identities, reproducible from ``seed``.

    Identity ``i`` always has the same centre for a given seed, so a gallery and probes drawn
    later (with another ``sample`` seed) agree on who is who. Memory: ``dim × 4`` bytes per identity.
    """

    def __init__(self, n_identities: int, *, seed: int = 0, shape: FaceprintShape = DLIB_RESNET):
        self.shape = shape
        self.n_identities = n_identities
        rng = np.random.default_rng([seed, 1])
        d = shape.dim
        mean = rng.standard_normal(d)
        mean /= np.linalg.norm(mean)
        within = _sqrt_spectrum(d, shape.within_alpha)[:, None] * _rotation(rng, d).T
        self._within = within.astype(np.float32)
        between = _sqrt_spectrum(d, shape.between_alpha)[:, None] * _rotation(rng, d).T
        self.centres = np.empty((n_identities, d), dtype=np.float32)
        for lo in range(0, n_identities, 65_536):  # chunks bound the float64 temporaries
            z = rng.standard_normal((min(65_536, n_identities - lo), d))
            self.centres[lo : lo + len(z)] = mean + shape.between_scale * (z @ between)

    def sample(self, identities: np.ndarray, *, seed: int) -> np.ndarray:
        """One new photo of each identity listed (repeats allowed): float32 (n, dim), unit norm."""
        identities = np.asarray(identities, dtype=np.int64)
        rng = np.random.default_rng([seed, 2])
        s = self.shape
        out = np.empty((len(identities), s.dim), dtype=np.float32)
        for lo in range(0, len(identities), 65_536):
            ids = identities[lo : lo + 65_536]
            e = rng.standard_normal((len(ids), s.dim), dtype=np.float32) @ self._within
            log_w = s.within_log_sd * rng.standard_normal((len(ids), 1)) - s.within_log_sd**2
            w = s.within_scale * np.exp(log_w)
            out[lo : lo + len(ids)] = normalise(self.centres[ids] + w.astype(np.float32) * e)
        return out


def identity_sizes(n_faces: int, mean_per_identity: float, *, seed: int) -> np.ndarray:
    """Photos per identity, geometric on 1, 2, … with the given mean, summing to exactly ``n_faces``.

    A geometric law gives what real collections show: many people seen once, a few seen often.
    """
    rng = np.random.default_rng([seed, 3])
    p = 1.0 / max(mean_per_identity, 1.0)
    sizes = rng.geometric(p, size=int(n_faces / mean_per_identity * 1.2) + 16)
    while sizes.sum() < n_faces:
        sizes = np.concatenate([sizes, rng.geometric(p, size=len(sizes))])
    cut = int(np.searchsorted(np.cumsum(sizes), n_faces))
    sizes = sizes[: cut + 1].copy()
    sizes[-1] -= sizes.sum() - n_faces
    return sizes


@dataclass
class SyntheticGallery:
    """A gallery (``vectors`` with their ``identities``) plus the generator to draw probes from."""

    vectors: np.ndarray  # float32 (n, dim), unit norm
    identities: np.ndarray  # int64 (n,), identity index of each row
    generator: FaceprintGenerator

    def probes(self, n: int, *, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``n`` fresh photos of identities present in the gallery (mated probes) and their identities."""
        rng = np.random.default_rng([seed, 4])
        # Drawn per gallery face, so people with many photos are probed more often, as in real use.
        who = self.identities[rng.integers(0, len(self.identities), size=n)]
        return self.generator.sample(who, seed=seed + 1_000_003), who


def make_gallery(
    n_faces: int, *, mean_per_identity: float = 8.0, seed: int = 0, shape: FaceprintShape = DLIB_RESNET
) -> SyntheticGallery:
    """``n_faces`` synthetic faceprints in identities of geometric size (mean ``mean_per_identity``).

    Deterministic in (n_faces, mean_per_identity, seed, shape). 1 M faces take ~2 s and 0.5 GiB.
    """
    sizes = identity_sizes(n_faces, mean_per_identity, seed=seed)
    gen = FaceprintGenerator(len(sizes), seed=seed, shape=shape)
    identities = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return SyntheticGallery(gen.sample(identities, seed=seed), identities, gen)


def similarity_stats(
    vectors: np.ndarray, identities: np.ndarray, *, max_faces: int = 3000
) -> dict[str, float]:
    """Mean and sd of same-identity and different-identity cosines over the first ``max_faces`` rows."""
    x, lab = vectors[:max_faces].astype(np.float64), identities[:max_faces]
    s = x @ x.T
    iu = np.triu_indices(len(x), 1)
    same = (lab[:, None] == lab[None])[iu]
    s = s[iu]
    return {
        "same_mean": float(s[same].mean()),
        "same_sd": float(s[same].std()),
        "diff_mean": float(s[~same].mean()),
        "diff_sd": float(s[~same].std()),
    }
