"""store/reads.py: the typed catalog reads the CLI and the service use instead of SQL of their own."""

from __future__ import annotations

from faceindex.store import reads
from faceindex.store.catalog import Catalog


def test_pages_counts_and_skipped_files(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    try:
        with catalog.transaction():
            first = catalog.create_collection("a", "consent", "tests")
            second = catalog.create_collection("b", "consent", "tests")
            ids = [catalog.insert_image(first.id, f"/photos/{n}.jpg", sha256=f"{n:064x}", size_bytes=10, width=40,
                                        height=30, fmt="JPEG", captured_at=None, status="indexed", n_faces=2)
                   for n in range(5)]
            catalog.insert_image(second.id, "/photos/bad.jpg", sha256=None, size_bytes=None, width=None, height=None,
                                 fmt=None, captured_at=None, status="skipped", error="not an image", n_faces=0)
        total, rows = reads.images_page(catalog, first.id, limit=2, offset=1)
        assert total == 5 and [r["id"] for r in rows] == ids[1:3] and rows[0]["collection"] == "a"
        assert reads.images_page(catalog, None, limit=100, offset=0)[0] == 6
        assert reads.image(catalog, ids[0])["uri"] == "/photos/0.jpg" and reads.image(catalog, 999) is None
        assert reads.collection_counts(catalog, first.id) == (5, 10)
        assert reads.collection_counts(catalog, second.id) == (0, 0)  # skipped files are not indexed images
        assert reads.collection_image_count(catalog, second.id) == 1
        assert reads.collection(catalog, second.id).name == "b" and reads.collection(catalog, 999) is None
        assert reads.image_sizes(catalog, [ids[0], 999]) == {ids[0]: (40, 30)}
        assert reads.skipped_files(catalog) == [("/photos/bad.jpg", "not an image")]
        assert "/photos/4.jpg" in reads.image_uris(catalog)
        assert reads.faces_page(catalog, collection_id=first.id, image_id=None, limit=10, offset=0) == (0, [])
        assert reads.audit_count(catalog) == reads.audit_last_seq(catalog) == 0
    finally:
        catalog.close()
