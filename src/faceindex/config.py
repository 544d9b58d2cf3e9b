"""Settings for the engine, read from arguments or FACEINDEX_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DetectorName = Literal["hog", "cnn", "yunet", "hog+yunet", "hog+cnn"]


class Settings(BaseSettings):
    """Every tunable of faceindex in one place; each field documents its unit and trade-off.

    Environment variables use the prefix `FACEINDEX_` (e.g. `FACEINDEX_STORE`, `FACEINDEX_DETECTOR`).
    """

    model_config = SettingsConfigDict(env_prefix="FACEINDEX_", extra="ignore")

    store: Path = Field(Path("faceindex-data"), description="Directory holding the catalog and index.")
    detector: DetectorName = Field(
        "hog",
        description="Face detector. 'hog' is fast on CPU; 'cnn' finds more profile/small faces but is ~20x "
        "slower; 'yunet' needs an ONNX model file (yunet_model); 'hog+yunet'/'hog+cnn' run the second "
        "detector only on images where HOG finds nothing.",
    )
    upsample: int = Field(
        1, ge=0, le=3, description="HOG/CNN upsampling passes; higher numbers find smaller faces, each costs ~4x."
    )
    detect_max_side: int = Field(
        1600, ge=160, description="Longest side (px) of the image the detector sees; faces are cropped at full size."
    )
    yunet_model: Path | None = Field(None, description="Path to a YuNet ONNX file (opencv_zoo 2023mar).")
    yunet_sha256: str | None = Field(
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        description="Expected sha256 of the YuNet file; None skips the check.",
    )
    yunet_score: float = Field(0.7, ge=0.0, le=1.0, description="YuNet confidence cut-off.")
    embed_runtime: Literal["auto", "dlib", "fast"] = Field(
        "auto",
        description="'dlib' uses dlib's own ResNet; 'fast' the same weights on a faster runtime; auto picks fast.",
    )
    flip_augment: bool = Field(
        False, description="Average the faceprint of the face and its mirror image (2x embed cost)."
    )
    min_face_px: int = Field(
        32, ge=8, description="Faces whose box is narrower than this (full-resolution px) are rejected."
    )
    min_blur: float = Field(
        12.0, ge=0.0, description="Minimum variance of the Laplacian of the 150px aligned chip; below is 'blurred'."
    )
    max_pixels: int = Field(80_000_000, ge=1, description="Decompression-bomb guard: refuse larger images.")
    max_bytes: int = Field(200 * 2**20, ge=1, description="Refuse image files larger than this many bytes.")
    workers: int = Field(0, ge=0, description="Ingest processes; 0 = one per CPU core.")
    top_k: int = Field(10, ge=1, le=100, description="Candidates returned per probe face by default.")
    max_candidates: int = Field(50, ge=1, description="Hard cap on candidates per probe face (guardrail).")
    threshold: float | None = Field(
        None,
        description="Fixed match threshold (cosine). None = calibrated: the threshold whose expected number of "
        "false candidates for the current gallery size stays below max_expected_false.",
    )
    max_expected_false: float = Field(0.1, gt=0.0, description="Bound on gallery_size x FMR at the default threshold.")
    calibration: Path | None = Field(
        None,
        description="Calibration JSON written by `faceindex calibrate` on your own labelled photos: the false-match "
        "rate of each threshold for your cameras and population. None = the file shipped for the model id "
        "(measured on LFW DevTrain, web photos of mostly adult public figures). A file made for another model "
        "id is refused.",
    )
    approximate_above: int = Field(200_000, ge=1, description="Gallery size at which search becomes approximate.")

    def resolved_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)
