"""Record an analysed video in the catalog: its image row, its tracks' faceprints as faces, tracks and thumbnails."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceindex.pipeline.video_analyse import AnalysedVideo
from faceindex.store.catalog import Catalog
from faceindex.video.store import VideoStore

FaceFilter = Callable[[np.ndarray], np.ndarray]
"""Given faceprints (n, dim), a boolean mask of the faces to drop (opt-out), as ingest.runner.FaceFilter."""


def commit_video(catalog: Catalog, videos: VideoStore, *, collection_id: int, uri: str, sha256: str | None,
                 size_bytes: int | None, analysis: AnalysedVideo, model_id: str,
                 face_filter: FaceFilter | None) -> dict[str, int]:
    """Insert one video (call inside the batch's transaction, so its tracks are all recorded or none are).

    Opt-out: a track any of whose faceprints the filter drops is dropped whole (its other faceprints and its
    thumbnail show the same person), counted in `opted_out_faces` and `images.faces_withheld`.
    Returns the image id and the counts to add to the batch: faces, opted_out_faces, tracks.
    """
    tracks = analysis.tracks
    dropped_faces = 0
    if tracks and face_filter is not None:
        drop = face_filter(np.stack([f.embedding for f in analysis.faces]))
        kept_tracks = [t for t in tracks if not any(drop[i] for i in t.faces)]
        dropped_faces = sum(len(t.faces) for t in tracks) - sum(len(t.faces) for t in kept_tracks)
        tracks = kept_tracks
    faces = [analysis.faces[i] for t in tracks for i in t.faces]
    info = analysis.info
    image_id = catalog.insert_image(collection_id, uri, sha256=sha256, size_bytes=size_bytes, width=analysis.width,
                                    height=analysis.height, fmt=analysis.format, captured_at=None,
                                    n_faces=len(faces), faces_withheld=dropped_faces)
    face_ids = iter(catalog.insert_faces(image_id, faces, model_id))
    videos.record_video(image_id, container=info.container, codec=info.codec, fps=info.fps,
                        duration_s=info.duration_s, processed_s=analysis.processed_s,
                        frames_analysed=analysis.frames_analysed, note=analysis.note)
    for track in tracks:
        videos.record_track(image_id, start_s=track.start_s, end_s=track.end_s, frames=track.frames,
                            best_s=track.best_s, box=track.best_box, thumbnail=videos.write_thumbnail(track.thumbnail),
                            face_ids=[next(face_ids) for _ in track.faces])
    return {"image_id": image_id, "faces": len(faces), "opted_out_faces": dropped_faces, "tracks": len(tracks)}
