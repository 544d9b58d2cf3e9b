"""The catalog on PostgreSQL vs the embedded SQLite file, in the same run: insert and lookup rates.

    python bench/bench_catalog.py                        # 4 000 images x 2 faces, throw-away local server
    python bench/bench_catalog.py --url postgresql://user@host/db   # an existing (empty) database instead
    python bench/bench_catalog.py --add-folder PHOTOS [--src OTHER/src]   # `faceindex add` end to end, both

Insert: faces/s written as ingest writes them (store.Catalog.insert_image + insert_faces, BATCH_FILES images per
transaction, each face with its 512-byte faceprint), over the whole run. Lookups, single thread, after the
inserts: `face_details` of 10 random face ids per call (what a search does for its top 10), and
`indexed_twin` by sha256 (what ingest asks of every file before analysing it), calls/s; and the time of a
bare `SELECT 1` through the catalog, the floor each statement pays (a round trip to the server on PostgreSQL).
Batched (the batch API, what ingest now uses): the same number of images and faces again, with one insert_images
and one insert_faces_of per transaction (COPY on PostgreSQL); image lookups by uri one by one (find_image) and
per LOOKUP_FILES uris (find_images, what ingest's scan does), uris/s.
PostgreSQL runs twice:
with its defaults (synchronous_commit=on: every commit waits for its WAL flush) and with synchronous_commit=off
given in the URL (`?options=-c%20synchronous_commit%3Doff`), closer to SQLite's synchronous=NORMAL, which does
not flush at each commit either. Without --url a throw-away server is started on loopback with the tests'
helper (initdb + pg_ctl; fsync left on) and stopped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from benchlib import machine_line  # noqa: E402
from store_support import MODEL, synthetic_faces  # noqa: E402

from faceindex.ingest.runner import BATCH_FILES, LOOKUP_FILES  # noqa: E402
from faceindex.store.catalog import Catalog  # noqa: E402

ASYNC = "options=-c%20synchronous_commit%3Doff"


def run(label: str, catalog: Catalog, images: int, faces_per_image: int, lookups: int, seed: int) -> dict:
    faces = synthetic_faces(BATCH_FILES * faces_per_image, seed)  # reused per batch: content does not matter
    with catalog.transaction():
        collection = catalog.create_collection("bench", "consent", "benchmark").id
        catalog.bind_model(MODEL)
    start = time.perf_counter()
    for lo in range(0, images, BATCH_FILES):
        with catalog.transaction():
            for i in range(lo, min(lo + BATCH_FILES, images)):
                image = catalog.insert_image(collection, f"/bench/{i}.jpg", sha256=f"{i:064x}", size_bytes=1,
                                             width=640, height=480, n_faces=faces_per_image)
                j = (i - lo) * faces_per_image
                catalog.insert_faces(image, faces[j:j + faces_per_image], MODEL)
    insert_s = time.perf_counter() - start
    total = images * faces_per_image
    # The same rows through the batch API (what ingest's commit now does with a batch's faces): one
    # insert_images and one insert_faces_of per transaction.
    start = time.perf_counter()
    for lo in range(0, images, BATCH_FILES):
        n = min(BATCH_FILES, images - lo)
        with catalog.transaction():
            ids = catalog.insert_images(collection, [
                {"uri": f"/batched/{i}.jpg", "sha256": f"b{i:063x}", "size_bytes": 1, "width": 640, "height": 480,
                 "n_faces": faces_per_image} for i in range(lo, lo + n)])
            catalog.insert_faces_of([(image, faces[k * faces_per_image:(k + 1) * faces_per_image])
                                     for k, image in enumerate(ids)], MODEL)
    batched_s = time.perf_counter() - start
    uris = [f"/bench/{i}.jpg" for i in range(images)]
    start = time.perf_counter()
    pick = random.Random(seed)
    for _ in range(lookups // 10):  # per chunk of LOOKUP_FILES, as ingest's scan asks
        chunk = pick.sample(uris, min(LOOKUP_FILES, images))
        assert all(row is not None for row in catalog.find_images(collection, chunk).values())
    chunk_s = time.perf_counter() - start
    start = time.perf_counter()
    for uri in random.Random(seed).sample(uris, min(lookups, images)):
        assert catalog.find_image(collection, uri) is not None
    one_s = time.perf_counter() - start
    rng = random.Random(seed)
    top = catalog.max_face_id()
    start = time.perf_counter()
    for _ in range(lookups):
        details = catalog.face_details(rng.sample(range(top - 2 * total + 1, top + 1), 10))
        assert len(details) == 10
    details_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(lookups):
        assert catalog.indexed_twin(f"{rng.randrange(images):064x}", MODEL) is not None
    twin_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(lookups):
        catalog.conn.execute("SELECT 1").fetchone()
    trip_ms = 1000 * (time.perf_counter() - start) / lookups
    row = {"backend": label, "faces_per_s": total / insert_s, "batched_faces_per_s": total / batched_s,
           "details_per_s": lookups / details_s, "sha256_per_s": lookups / twin_s,
           "uri_per_s": min(lookups, images) / one_s,
           "uri_batched_per_s": (lookups // 10) * min(LOOKUP_FILES, images) / chunk_s, "round_trip_ms": trip_ms}
    print(f"{label:<37} insert {row['faces_per_s']:7.0f} faces/s, batched {row['batched_faces_per_s']:7.0f}  "
          f"face_details(10 ids) {row['details_per_s']:6.0f}/s  image by sha256 {row['sha256_per_s']:6.0f}/s  "
          f"image by uri {row['uri_per_s']:6.0f}/s, per {LOOKUP_FILES} {row['uri_batched_per_s']:7.0f}/s  "
          f"SELECT 1 {trip_ms:.3f} ms", flush=True)
    catalog.close()
    return row


def add_runs(folder: Path, src: Path, url: str, tmp: Path) -> None:
    """`faceindex add FOLDER` end to end into SQLite and into PostgreSQL (a new database), then the same command
    again (every file unchanged: what a nightly rescan of an archive costs), timed as whole processes."""
    import json
    import os
    import subprocess

    n_files = sum(1 for p in folder.rglob("*") if p.is_file())
    env = {**os.environ, "PYTHONPATH": str(src)}
    for label, catalog_url in (("sqlite", ""), ("postgresql", url)):
        store = tmp / f"add-{label}"
        cmd = [sys.executable, "-m", "faceindex", "add", str(folder), "--collection", "c", "--basis", "consent",
               "--purpose", "bench", "--store", str(store), "--json"]
        for run_label in ("first add", "again (unchanged)"):
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                  env={**env, "FACEINDEX_CATALOG_URL": catalog_url})
            seconds = time.perf_counter() - start
            report = json.loads(done.stdout)
            print(f"add {label:<10} {run_label:<18} {n_files} files in {seconds:6.1f} s = {n_files / seconds:6.1f} "
                  f"files/s (indexed {report['indexed']}, unchanged {report['unchanged']}, faces {report['faces']})",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4_000)
    parser.add_argument("--faces-per-image", type=int, default=2)
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--url", help="an existing empty PostgreSQL database (default: a throw-away server)")
    parser.add_argument("--add-folder", type=Path, help="instead: time `faceindex add` of this folder end to end")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                        help="the faceindex sources `--add-folder` runs (default: this checkout's)")
    args = parser.parse_args()
    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine_line()}")
    if args.add_folder is None:
        print(f"# {args.images} images x {args.faces_per_image} faces, batches of {BATCH_FILES} images, "
              f"{args.lookups} lookups of each kind")
    else:
        print(f"# faceindex add {args.add_folder} with the sources in {args.src}")
    server = None
    if args.url is None:
        from pg_support import PostgresServer

        server = PostgresServer().start(durable=True)
    try:
        if args.add_folder is not None:
            with tempfile.TemporaryDirectory() as tmp:
                add_runs(args.add_folder, args.src, args.url or server.new_database(), Path(tmp))
            return
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "a").mkdir()
            rows.append(run("sqlite (WAL, synchronous=NORMAL)", Catalog(Path(tmp) / "a" / "catalog.sqlite"),
                            args.images, args.faces_per_image, args.lookups, 1))
            if args.url:  # a caller's database: one run, with the URL's own settings
                runs = [("postgresql (as the URL says)", args.url)]
            else:
                runs = [("postgresql (defaults)", server.new_database()),
                        ("postgresql (synchronous_commit=off)", server.new_database() + "?" + ASYNC)]
            for n, (label, url) in enumerate(runs):
                (Path(tmp) / f"p{n}").mkdir()
                rows.append(run(label, Catalog(Path(tmp) / f"p{n}" / "catalog.sqlite", url=url, lazy=True),
                                args.images, args.faces_per_image, args.lookups, 1))
        base = rows[0]
        for row in rows[1:]:
            print(f"# {row['backend']} / sqlite: insert {row['faces_per_s'] / base['faces_per_s']:.2f}x, "
                  f"face_details {row['details_per_s'] / base['details_per_s']:.2f}x, "
                  f"sha256 lookup {row['sha256_per_s'] / base['sha256_per_s']:.2f}x; batched insert "
                  f"{row['batched_faces_per_s'] / base['batched_faces_per_s']:.2f}x, uri lookups "
                  f"{row['uri_per_s'] / base['uri_per_s']:.2f}x one by one, "
                  f"{row['uri_batched_per_s'] / base['uri_batched_per_s']:.2f}x per {LOOKUP_FILES}")
            print(f"# {row['backend']}: batched insert {row['batched_faces_per_s'] / row['faces_per_s']:.1f}x "
                  f"its own row-by-row rate, uri lookups per {LOOKUP_FILES} "
                  f"{row['uri_batched_per_s'] / row['uri_per_s']:.1f}x one by one")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
