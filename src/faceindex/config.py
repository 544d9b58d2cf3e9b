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
        "hog+cnn",
        description="Face detector. 'hog' is fast on CPU; 'cnn' finds more profile/small faces but is ~20x "
        "slower; 'yunet' needs an ONNX model file (yunet_model); 'hog+yunet'/'hog+cnn' run the second "
        "detector only on images where HOG finds nothing. Default 'hog+cnn': on LFW DevTrain HOG finds no face "
        "in 25 of 3 443 photos and the CNN fallback (bounded by fallback_max_side / fallback_gate) finds all 25, "
        "+0.6 % pair accuracy; photos with faces cost nothing more.",
    )
    detail: Literal["fast", "auto", "thorough"] = Field(
        "auto",
        description="How hard to look for faces. 'fast': `detector` as set (HOG finds faces down to ~40-80 px "
        "in the detection image). 'thorough': HOG plus dlib's CNN (MMOD) on onnxruntime over the image enlarged "
        "so faces of `thorough_min_face` px are found, on every photo: ~8 CPU-s per 1-MP photo whatever it "
        "shows. 'auto' (default): fast, then on photos that are not portraits (not 1-2 faces of >= 10 % of the "
        "shorter side, nor found turned) a probe of the CNN in 9 small tiles (~0.6 CPU-s), and the thorough CNN "
        "pass only where the probe finds >= 3 small faces. Measured (BENCHMARKS.md, bench_crowd): auto finds the "
        "crowd faces thorough finds (0.824 of YuNet's, both), probes 2 of the 300 LFW and 0 of the 60 people/ "
        "photos of the ingest bench (+8 % time on LFW), and adds ~0.6 CPU-s to photos without faces and groups. "
        "Faces narrower than "
        "min_face_px are counted and redacted but refused for search.",
    )
    thorough_min_face: int = Field(
        12, ge=4, le=80,
        description="With detail='thorough': the smallest face (px, in the detection image) to look for. "
        "The CNN's window is 80 px, so the image is enlarged 80/thorough_min_face times (cost ~ the square).",
    )
    thorough_max_megapixels: float = Field(
        40.0, gt=0.0,
        description="With detail='thorough' (or auto's CNN pass): cap on the enlarged image's size (megapixels), "
        "which bounds the cost per photo (~0.06-0.1 s per megapixel of the pyramid on one core, ~2.3x this): "
        "large photos are enlarged less, so their smallest faces may be missed (measured on ultralight__17, "
        "1600x898: recall 0.64 at 40, 0.69 at 70 for +50 % time). Memory does not follow it: the pyramid runs "
        "in 1024 px tiles (peak ~370 MB per worker at 40, was ~2.4 GB before tiling).",
    )
    thorough_threshold: float = Field(
        -0.2, ge=-2.0, le=2.0,
        description="With detail='thorough': the CNN score a window needs (dlib's own default is 0). Measured "
        "with bench_crowd on the crowd photos of shared/faces/groups: 0 finds 0.73 of YuNet's faces, -0.4 finds "
        "0.77 but adds 2 faces to the annotated PASCAL photos (a printed face, a dark blob, scores -0.24 and "
        "-0.28); the best window on any photo of shared/faces/nonfaces scores -0.55. Lower finds more small "
        "faces and more false ones. In a crowd, weaker windows (down to crowd_detect.CROWD_THRESHOLD, -0.9) are "
        "kept where confident faces of their size surround them.",
    )
    upsample: int = Field(
        1, ge=0, le=3, description="HOG/CNN upsampling passes; higher numbers find smaller faces, each costs ~4x."
    )
    detect_max_side: int = Field(
        1600, ge=160, description="Longest side (px) of the image the detector sees; faces are cropped at full size."
    )
    fallback_max_side: int | None = Field(
        400, ge=80,
        description="Longest side (px) of the image a dlib CNN sees when it is the fallback of 'hog+cnn' (run "
        "without upsampling): it finds the turned faces HOG misses when they fill >= ~20 % of the photo, at ~1 s "
        "per photo without a HOG face on one core. None = full detection size with `upsample` (~7 s/megapixel).",
    )
    fallback_gate: float | None = Field(
        -0.5, le=0.0,
        description="With 'hog+cnn', the CNN runs only on photos where HOG's best rejected window scored at "
        "least this (HOG scores < 0 are near misses): photos with nothing face-like skip the ~1 s CNN. Lower "
        "runs it more often (more turned faces found, slower on photos without people); None = always.",
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
        True,
        description="Average the faceprint of the face and its mirror image: 2x embed cost (~7 ms more per face "
        "with the fast runtime), +0.36 % pair accuracy on LFW DevTrain (98.82 -> 99.18 %). Changes the model id "
        "(dlib-resnet-v1+flip): a store indexed with the other setting must be re-indexed.",
    )
    rotate_retry: bool = Field(
        True,
        description="On a photo with no usable face that its EXIF tag did not turn (tag absent or 1), look "
        "again with it turned 90° clockwise, 90° counter-clockwise, then upside down (sideways scans, edited "
        "copies): up to 3 more primary-detector runs on photos without faces (+~50 % time on them), with a "
        "stricter score. Faces found so are stored in the photo's own coordinates.",
    )
    min_face_px: int = Field(
        32, ge=8, description="Faces whose box is narrower than this (full-resolution px) are rejected."
    )
    min_blur: float = Field(
        4.0, ge=0.0,
        description="Minimum variance of the Laplacian of the 150px aligned chip; below is 'blurred' (refused). "
        "Measured on LFW DevTrain: faces of sharpness 6-12 still verify at 99.0 % (vs 99.3 % above 12), so a "
        "cut at 12 refused 2.6 % of usable faces; below 4 are 3 of 3 443 (a GaussianBlur of radius 6 on a "
        "portrait gives ~2).",
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
    approximate_above: int = Field(
        50_000, ge=1, description="Gallery size at which search switches from exact to HNSW (exact is ~1.4 ms at 50k)."
    )

    index_layout: Literal["sq8-mmap", "hnsw-sq8-mmap", "ivf-sq8-mmap", "hnsw-flat"] = Field(
        "sq8-mmap",
        description="Approximate index layout. 'sq8-mmap' (default): 8-bit codes in RAM, float32 vectors memory-"
        "mapped for exact re-ranking; HNSW up to 1M faces (~280 B/face, mate recall 0.984 at 1M), IVF beyond "
        "(~145 B/face; at 10M recall@10 0.981, mate recall 0.980, p99 12 ms CPU, where HNSW gave 0.916). "
        "'hnsw-sq8-mmap' / 'ivf-sq8-mmap' force one of the two; "
        "'hnsw-flat': ~792 B/face in RAM, mate recall 0.998 at 1M. Takes effect when the index is next built "
        "(faceindex reindex).",
    )
    index_ef_search: int | None = Field(
        None, ge=1, le=16384,
        description="HNSW search breadth (None: the layout's, 512 for hnsw-sq8-mmap, 256 for hnsw-flat). Higher "
        "finds more true matches for more time; no rebuild needed. Measured at 10M faces with hnsw-sq8-mmap: "
        "512 gave p99 7.2 ms but recall@10 0.916, so galleries of millions want 1024 or more.",
    )

    vectors_url: str = Field(
        "faiss",
        description="Where faceprints are searched. 'faiss' (default): embedded, `<store>/index.faiss` beside the "
        "catalog, erasure proven byte by byte. A Milvus server or cluster URI (`http://host:19530`, credentials as "
        "`http://user:password@host:19530`) or a local path ending in `.db` (Milvus Lite, one process on one "
        "machine) puts them in Milvus (`pip install 'faceindex[cluster]'`); the catalog stays the source of truth, "
        "so `faceindex reindex` rebuilds the collection from it. On Milvus an erasure is verified by query, not "
        "byte by byte: on a server deleted rows linger in its segments until compaction and garbage collection; "
        "a Milvus Lite collection is rebuilt from the catalog after each erasure (Lite does not compact).",
    )
    catalog_url: str = Field(
        "",
        description="Where the catalog (collections, images, faces, subjects, consent, opt-outs, audit log, keys, "
        "jobs) lives. '' (default): `<store>/catalog.sqlite`, embedded, erasure proven byte by byte. A PostgreSQL "
        "URL (`postgresql://user:password@host:5432/database`, libpq parameters as query string) puts it on that "
        "server (`pip install 'faceindex[cluster]'`), one database per store: the first write creates the "
        "schema (and the database when the role may). The store directory still holds the write lock, the "
        "opt-out key and uploads. Several machines may share the database: writers take turns through an "
        "advisory lock. Erasure there is verified by query and VACUUM, not byte by byte: WAL segments, backups "
        "and replicas keep old rows until they are recycled or expire.",
    )
    vectors_collection: str = Field(
        "faceindex_faces", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Milvus collection of this store (one per store: a collection records the store it mirrors "
        "and refuses another). Ignored with vectors_url='faiss'.",
    )

    video_sample_fps: float = Field(
        1.0, gt=0.0, le=30.0,
        description="Video: frames analysed per second of video (keyframes are analysed too). Higher finds short "
        "appearances and tightens time spans (error <= half a step) for proportionally more time: ~0.2 CPU-s per "
        "analysed 720p frame.",
    )
    video_detect_max_side: int = Field(
        640, ge=160,
        description="Video: longest side (px) of the frame copy the detector sees, with video_upsample. 640 with "
        "upsample 1 finds faces of ~80 px in 720p video (~120 px in 1080p) at ~0.15 s per frame on one core.",
    )
    video_upsample: int = Field(1, ge=0, le=2, description="Video: HOG upsampling passes on each analysed frame.")
    video_faceprints_per_track: int = Field(
        3, ge=1, le=10,
        description="Video: most faceprints stored per track (the best one, then only ones of other poses).",
    )
    video_max_pixels: int = Field(
        3840 * 2160, ge=1, description="Video: refuse videos whose frames are larger (width x height, px)."
    )
    video_max_duration_s: float = Field(
        4 * 3600.0, gt=0.0,
        description="Video: seconds of each video indexed; a longer one is indexed up to this point and its "
        "record says so (a 10-hour recording costs ~1 CPU-hour at the default sampling).",
    )
    video_max_bytes: int = Field(64 * 2**30, ge=1, description="Video: refuse video files larger than this.")

    def resolved_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)
