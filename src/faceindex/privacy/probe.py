"""Selfie probes for privacy operations: one faceprint from a photo, and the strict threshold they use."""

from __future__ import annotations

import numpy as np

from faceindex.errors import NoFaceError, ProbeQualityError
from faceindex.matching import ThresholdPolicy
from faceindex.privacy.context import ImageSource, PrivacyContext

STRICT_FMR = 1e-5
"""False-match rate of the strict threshold when the model is calibrated (search defaults to <= 1e-3)."""

UNCALIBRATED_STRICT = 0.94
"""Strict cosine when no calibration exists for the model. Measured on dlib-resnet-v1 faceprints of
465 faces (36 people of ../shared/faces/people + 120 LFW DevTrain people): cosine >= 0.94 accepted
92 % of genuine pairs and 5 of 107 096 impostor pairs (FMR 4.7e-5); 0.92, the search-like operating
point, accepted 99 % of genuine pairs at FMR 1.0e-3."""


def strict_threshold(policy: ThresholdPolicy, comparisons: int) -> float:
    """Cosine threshold for operations where a false match hurts someone else, never below search's.

    Used where a wrong match deletes another person's faces (erasure by selfie, opt-out sweeps and
    the ingest filter) or shows another person's photo (access report, redaction keep-list). The cost
    is recall: about 1 in 12 genuine faces scores below it (see UNCALIBRATED_STRICT), which is why
    erasure by selfie lists its matches first and why several selfies can be given.
    `comparisons` is the number of faces each probe is compared with (gallery or template count).
    """
    base = policy.threshold(max(comparisons, 1))
    if policy.calibration is None:
        return max(base, UNCALIBRATED_STRICT)
    return max(base, float(policy.calibration.threshold_for_fmr(STRICT_FMR)))


def selfie_faceprint(ctx: PrivacyContext, source: ImageSource) -> np.ndarray:
    """The faceprint of the largest usable face of a selfie (L2-normalised float32, 128-d).

    Raises NoFaceError when no face is found and ProbeQualityError (with the reason) when the only
    faces are too small or too blurred. The photo and the faceprint are never stored by this call.
    """
    analysis = ctx.analyse(source)
    if not analysis.faces:
        raise NoFaceError("no face found in the selfie")
    accepted = sorted(analysis.accepted, key=lambda f: -f.size_px)
    if not accepted:
        reasons = "; ".join(sorted({f.rejected or "unusable" for f in analysis.faces}))
        raise ProbeQualityError(f"the selfie's face cannot be used: {reasons}")
    ctx.store.check_model(ctx.model_id())
    return np.asarray(accepted[0].embedding, dtype=np.float32)
