"""Video ingest and search on real faces: tracks with time spans, 1-3 faceprints per track, bad input skipped."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import video_support as vs

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import VideoError
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.video_analyse import VideoAnalyser
from faceindex.pipeline.video_decode import sniff_video
from faceindex.video.timecode import parse_timecode, timecode

TIMECODE = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3}$")


@pytest.fixture(scope="module")
def made(faces_dir, tmp_path_factory) -> dict[str, Path]:
    return vs.videos(faces_dir, tmp_path_factory.getbasetemp() / "videos")


def engine_at(store: Path, **settings) -> Engine:
    """An Engine on `store` sharing the session's models (with these settings, the video ones included)."""
    return Engine(store, Settings(workers=1, **settings), pipeline=_pipeline_with(**settings))


@pytest.fixture(scope="module")
def indexed(faces_dir, made, tmp_path_factory) -> Path:
    """A store holding the made video and the real Hamilton clip (read-only for the tests that use it)."""
    store = tmp_path_factory.mktemp("video-store")
    with engine_at(store) as engine:
        report = engine.ingest([made["made"], faces_dir / "video" / "short_hamilton_clip.mp4"], "clips",
                               basis="consent", purpose="video tests")
    assert (report.indexed, report.videos, report.skipped) == (2, 2, [])
    return store


def video_hits(store: Path, photo: Path) -> list[dict]:
    with engine_at(store) as engine:
        result = engine.search([str(photo)], "video tests")[0].to_dict()
    return [c for face in result["faces"] for c in face["candidates"] if "video" in c]


def test_timecodes():
    assert timecode(0) == "00:00:00.000"
    assert timecode(3725.5) == "01:02:05.500"
    assert timecode(36000.0004) == "10:00:00.000"
    assert parse_timecode("01:02:05.5") == 3725.5


def test_containers_are_sniffed_by_content_and_decoded(made):
    expected = {"made": "mp4", "clip.mov": "mov", "clip.mkv": "matroska", "clip.webm": "matroska",
                "clip.avi": "avi", "clip.ts": "mpegts"}
    for name, family in expected.items():
        assert sniff_video(made[name].read_bytes()[:600]) == family, name
    # HEIC photos are ISO media too, but not video; neither are JPEGs.
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") is None
    assert sniff_video(b"\xff\xd8\xff\xe0" + b"\x00" * 600) is None
    analyser = VideoAnalyser(vs.pipeline())
    for name in ("clip.mov", "clip.mkv", "clip.webm", "clip.avi", "clip.ts"):
        result = analyser.analyse(made[name])
        assert result.info.width == 160 and result.processed_s == pytest.approx(1.0, abs=0.15), name
        assert len(result.tracks) == 1, name  # one person, one shot


def test_clip_still_finds_miranda_with_a_time_span(indexed, faces_dir):
    hits = video_hits(indexed, faces_dir / "video" / "lin-manuel-miranda.png")
    assert hits, "the reference still must find Lin-Manuel Miranda in the clip"
    assert all(h["path"].endswith("short_hamilton_clip.mp4") for h in hits)
    best = hits[0]["video"]
    assert TIMECODE.match(best["start"]) and TIMECODE.match(best["end"])
    assert 0.0 <= best["start_s"] < best["end_s"] <= 9.3
    assert parse_timecode(best["start"]) == pytest.approx(best["start_s"], abs=0.001)
    # He is on screen (medium shot) from ~3 s to ~7.5 s: the best hit's span covers the middle of it.
    assert best["start_s"] <= 5.0 <= best["end_s"]
    thumb = Path(best["thumbnail"])
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    assert stat.S_IMODE(thumb.stat().st_mode) == 0o600
    assert stat.S_IMODE(thumb.parent.stat().st_mode) == 0o700
    # The other person's still does not find Miranda's tracks as his.
    assert {h["video"]["track"] for h in video_hits(indexed, faces_dir / "video" / "alex-lacamoire.png")}.isdisjoint(
        {h["video"]["track"] for h in hits})


def test_made_video_each_appearance_within_one_second(indexed, faces_dir):
    for person in ("Jennifer_Aniston", "Matt_Damon"):
        hits = [h for h in video_hits(indexed, vs.probe(faces_dir, person)) if h["path"].endswith("made.mp4")]
        spans = sorted((h["video"]["start_s"], h["video"]["end_s"]) for h in hits)
        truth = [(start, end) for who, start, end in vs.TRUTH if who == person]
        assert len(spans) == len(truth), (person, spans)
        for (start, end), (t_start, t_end) in zip(spans, truth, strict=True):
            assert abs(start - t_start) <= 1.0 and abs(end - t_end) <= 1.0, (person, spans)
        assert all(h["video"]["spans"] == hits[0]["video"]["spans"] for h in hits)  # every span, on each hit
        assert [s["start_s"] for s in hits[0]["video"]["spans"]] == [s for s, _ in spans]


def test_no_track_mixes_two_people(indexed, faces_dir):
    pipe = vs.pipeline()
    probes = {p: pipe.analyse(str(vs.probe(faces_dir, p))).accepted[0].embedding for p in vs.PROBES}
    with engine_at(indexed) as engine:
        made_id = next(r["id"] for r in engine.catalog.conn.execute("SELECT id, uri FROM images")
                       if r["uri"].endswith("made.mp4"))
        by_track = vs.track_faces(indexed)
        made_tracks = [t for t in vs.tracks(indexed) if t["image_id"] == made_id]
        assert len(made_tracks) == 3
        for track in made_tracks:
            vectors = engine.privacy.faceprints(by_track[track["id"]])
            who = {max(probes, key=lambda p: float(v @ probes[p])) for v in vectors}
            assert len(who) == 1, f"track {track['id']} mixes {who}"
            person = who.pop()
            assert all(float(v @ probes[person]) > 0.93 for v in vectors)


def test_faceprints_per_track_are_few(indexed):
    with engine_at(indexed) as engine:
        rows = engine.catalog.conn.execute(
            "SELECT v.frames_analysed, i.n_faces, (SELECT count(*) FROM video_tracks t WHERE t.image_id = i.id)"
            " AS tracks FROM videos v JOIN images i ON i.id = v.image_id").fetchall()
    by_track = vs.track_faces(indexed)
    assert all(1 <= len(faces) <= 3 for faces in by_track.values())
    for frames, faces, tracks in rows:
        assert faces <= 3 * tracks and faces < frames  # not one faceprint per frame


def test_bad_video_files_are_skipped_with_reasons(made, faces_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = made["made"].read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    shutil.copy(made["audio.mp4"], folder / "audio-only.mp4")
    avi = made["clip.avi"].read_bytes()
    (folder / "unknown-codec.avi").write_bytes(avi.replace(b"FMP4", b"ZZZZ"))
    shutil.copy(made["clip.mkv"], folder / "good.mkv")
    shutil.copy(made["clip.mov"], folder / "small.mov")  # 160x120: under the limit below
    shutil.copy(made["made"], folder / "big.mp4")  # 480x270: over it
    store = tmp_path / "store"
    with engine_at(store, video_max_pixels=320 * 240) as engine:
        report = engine.ingest([folder], "c", basis="consent", purpose="t")
    reasons = {Path(uri).name: why for uri, why in report.skipped}
    assert "not a readable video" in reasons["truncated.mp4"]
    assert "empty" in reasons["empty.mp4"]
    assert reasons["audio-only.mp4"] == "no video stream (audio only)"
    assert "unsupported video codec" in reasons["unknown-codec.avi"]
    assert "video_max_pixels" in reasons["big.mp4"]
    assert report.indexed == 2 and report.videos == 2  # good.mkv and small.mov went in
    tracks = vs.tracks(store)
    assert len(tracks) == 2 and len(vs.thumbnails(store)) == 2


def test_duration_limit_indexes_the_start_and_says_so(made):
    result = VideoAnalyser(_pipeline_with(video_max_duration_s=4.0)).analyse(made["made"])
    assert result.processed_s <= 4.2 and "video_max_duration_s" in result.note
    assert [round(t.start_s) for t in result.tracks] == [0, 3]
    assert all(t.end_s <= result.processed_s for t in result.tracks)


def test_variable_frame_rate_is_sampled_by_time(made):
    result = VideoAnalyser(vs.pipeline()).analyse(made["vfr.mkv"])
    # frames at 0, 0.1, 0.15, 0.9, 1.0, 2.5, 2.6, 4.0, 4.01 s: one a second is taken by its own timestamp
    assert result.frames_analysed == 4
    assert len(result.tracks) == 1
    assert result.tracks[0].start_s == 0.0 and result.tracks[0].end_s == pytest.approx(4.05, abs=0.06)


def test_a_file_changing_while_read_is_refused(made, tmp_path):
    path = tmp_path / "growing.mp4"
    shutil.copy(made["made"], path)

    def grow(done_s, duration_s):
        with open(path, "ab") as handle:
            handle.write(b"\0" * 16)

    with pytest.raises(VideoError, match="changed while being read"):
        VideoAnalyser(vs.pipeline()).analyse(path, progress=grow)


def test_reingest_skips_unchanged_and_replaces_changed_video(made, tmp_path):
    store = tmp_path / "store"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(made["clip.mkv"], folder / "v.mkv")
    shutil.copy(made["clip.mkv"], folder / "copy.mkv")  # byte-identical: its faces and tracks are copied
    before = hashlib.sha256((folder / "v.mkv").read_bytes()).hexdigest()
    with engine_at(store) as engine:
        first = engine.ingest([folder], "c", basis="consent", purpose="t")
        assert (first.indexed + first.copied, first.videos, first.tracks) == (2, 2, 2)
        assert len(vs.thumbnails(store)) == 2
        assert engine.ingest([folder], "c").unchanged == 2
        assert engine.ingest([folder], "c", detail="thorough").unchanged == 2  # a video's analysis has no levels
        shutil.copy(made["clip.avi"], folder / "v.mkv")  # new content at the same path
        again = engine.ingest([folder], "c")
    assert (again.replaced, again.indexed) == (1, 1)
    assert len(vs.tracks(store)) == 2 and len(vs.thumbnails(store)) == 2  # the old track's thumbnail is gone
    assert hashlib.sha256(made["clip.mkv"].read_bytes()).hexdigest() == before  # sources never written


def _pipeline_with(**settings) -> FacePipeline:
    base = vs.pipeline()
    if not settings:
        return base
    return FacePipeline(base.settings.model_copy(update=settings), detector=base.detector, embedder=base.embedder)


def test_sampling_rate_setting_changes_frames_analysed(made):
    fast = VideoAnalyser(_pipeline_with(video_sample_fps=2.0, video_max_duration_s=6)).analyse(made["made"])
    slow = VideoAnalyser(_pipeline_with(video_max_duration_s=6)).analyse(made["made"])
    assert fast.frames_analysed >= 2 * slow.frames_analysed - 2
    assert len(fast.faces) == len(slow.faces) == 2  # more frames, not more faceprints: one pose per shot
    assert np.allclose([t.start_s for t in fast.tracks], [t.start_s for t in slow.tracks], atol=0.6)


def test_cli_add_and_search_show_video_timecodes(made, faces_dir, tmp_path):
    from typer.testing import CliRunner

    from faceindex.cli import app

    runner = CliRunner()
    store = tmp_path / "store"
    added = runner.invoke(app, ["add", str(made["made"]), "-c", "clips", "--basis", "consent", "--purpose", "t",
                                "--workers", "1", "--store", str(store)], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert "1 of the images are videos, with 3 tracks" in " ".join(added.output.split())
    probe = str(vs.probe(faces_dir, "Jennifer_Aniston"))
    shown = runner.invoke(app, ["search", probe, "--purpose", "t", "--store", str(store)], catch_exceptions=False,
                          env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "00:00:08.000-00:00:10.500" in shown.output, shown.output
    lines = runner.invoke(app, ["search", probe, "--purpose", "t", "--store", str(store), "--json"]).output
    (result,) = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    hit = result["faces"][0]["candidates"][0]
    assert {"face_id", "image_id", "path", "box", "score", "fmr"} <= hit.keys()  # the photo shape, extended
    assert [s["start"] for s in hit["video"]["spans"]] == ["00:00:00.000", "00:00:08.000"]


@pytest.mark.slow
def test_per_video_progress_reaches_the_caller_in_process_and_from_workers(made, tmp_path):
    seen: dict[int, list[tuple[str, float, float | None]]] = {}
    for workers in (1, 2):
        store = tmp_path / f"store-{workers}"
        with Engine(store, Settings(workers=workers), pipeline=vs.pipeline()) as engine:
            # Two files, so that workers=2 runs a process pool (one file is analysed in this process).
            engine.ingest([made["made"], made["clip.mkv"]], "c", basis="consent", purpose="t",
                          video_progress=lambda uri, done, total, w=workers: seen.setdefault(w, []).append(
                              (uri, done, total)))
    for workers, calls in seen.items():
        calls = [c for c in calls if c[0].endswith("made.mp4")]
        assert calls and all(total == pytest.approx(10.5) for _, _, total in calls), workers
        done = [d for _, d, _ in calls]
        assert done == sorted(done) and done[-1] >= 9.5, (workers, done)  # time processed, in order, to the end
    assert set(seen) == {1, 2}


def test_a_video_given_as_bytes_is_analysed_like_its_file(made, faces_dir):
    """Ray's read stage hands each file's bytes to the analysing function: a video must not become a skip, and
    a photo's bytes must still be analysed as a photo."""
    from faceindex.pipeline.parallel import analyse_file

    from_bytes = analyse_file(made["made"].read_bytes(), "u", vs.pipeline())
    from_path = analyse_file(str(made["made"]), "u", vs.pipeline())
    assert from_bytes.error is None and from_path.error is None
    assert [(t.start_s, t.end_s) for t in from_bytes.analysis.tracks] == \
        [(t.start_s, t.end_s) for t in from_path.analysis.tracks] == [(0.0, 3.0), (3.0, 6.0), (8.0, 10.5)]
    photo = analyse_file(vs.probe(faces_dir, "Matt_Damon").read_bytes(), "u", vs.pipeline())
    assert photo.error is None and len(photo.analysis.accepted) == 1
