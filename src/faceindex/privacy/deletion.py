"""The one deletion primitive: images, faces and collections gone in one transaction with one audit event.

`faceindex remove` (Engine.remove_image / remove_collection) and every erasure route (privacy.erasure) end
here, so there is one place that chunks id lists, bumps the index epoch once, writes the audit event with
the deletion, drops the vectors from the index and checkpoints the WAL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from faceindex.privacy.actions import Deletion
from faceindex.privacy.context import PrivacyContext, chunked_query
from faceindex.store.catalog import id_chunks
from faceindex.video.store import VideoStore


def delete_images(ctx: PrivacyContext, image_ids: Iterable[int], event: Deletion, *, face_ids: Sequence[int] = (),
                  collection_ids: Sequence[int] = (), also: Callable[[], dict[str, int]] | None = None) -> int:
    """Delete images (with their faces), single `face_ids` and the (emptied) `collection_ids` in one
    transaction, record `event` with its counts filled in, then drop the vectors from the index.

    `also` runs inside the transaction (erasure deletes subjects and journals upload work there) and returns
    extra counts for the event. Every id list is chunked (ID_CHUNK ids per statement), so a collection of any
    size can be deleted. Returns the number of faces deleted (rejected faces, which have no faceprint, count).
    """
    image_ids = sorted({int(i) for i in image_ids})
    catalog = ctx.catalog
    videos = VideoStore(catalog, ctx.store.root)
    with catalog.transaction() as conn:
        doomed = {r[0] for r in chunked_query(catalog, "SELECT id FROM faces WHERE image_id IN ({marks})", image_ids)}
        doomed.update(int(f) for f in face_ids)
        # A video track goes whole with any of its faces (its other faceprints and thumbnail show the same person).
        tracks, track_faces, thumbnails = videos.doomed(doomed, image_ids)
        doomed.update(track_faces)
        videos.delete_tracks(tracks)
        gone = sorted(doomed)
        # Faces first, in one call: the epoch is bumped once, which keeps the index's fast removal path.
        removed = catalog.delete_faces(gone)
        for chunk in id_chunks(image_ids):
            catalog.delete_images(chunk)  # no face left in them: no second epoch bump
        conn.executemany("DELETE FROM collections WHERE id = ?", [(int(c),) for c in collection_ids])
        extra = also() if also is not None else {}
        ctx.audit.record(event.with_counts(images=len(image_ids), faces=removed, **extra), actor=ctx.actor)
    videos.remove_thumbnails(thumbnails)  # after the commit: a rollback must not leave rows naming lost files
    ctx.store.forget_vectors(gone)
    catalog.checkpoint()  # deleted rows must not survive in the -wal file
    return removed
