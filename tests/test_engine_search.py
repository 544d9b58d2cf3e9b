"""End-to-end: ingest real photos of labelled people into two collections, then search them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import PolicyError

GALLERY_PEOPLE = ["Angelina_Jolie", "Cai_Xukun", "John_Simm", "John_Savage", "John_Salley", "Katy_Perry",
                  "Scarlett_Johansson", "Jennifer_Aniston", "Matt_Damon", "Mark_Zuckerberg", "Jack_Dorsey",
                  "George_Clooney"]
# People who are never ingested: their photos must not match anyone (impostor searches).
STRANGERS = ["Tom_Hanks", "Tom_Cruise", "Nathalie_Baye", "Lin-Manuel_Miranda", "Bradley_Cooper", "Sundar_Pichai",
             "Rob_Lowe", "Paul_Rudd", "Kate_Siegel", "Jeff_Bezos"]


def photos(faces_dir: Path, person: str) -> list[Path]:
    return sorted(p for p in (faces_dir / "people" / person).iterdir() if p.suffix.lower() in {".jpg", ".png"})


@pytest.fixture(scope="module")
def gallery(faces_dir, tmp_path_factory):
    """A store with two collections; the first photo of each person is held out as the probe."""
    root = tmp_path_factory.mktemp("gallery")
    split = {"archive-a": root / "a", "archive-b": root / "b"}
    probes = {}
    for person in GALLERY_PEOPLE:
        files = photos(faces_dir, person)
        probes[person] = files[0]
        for n, src in enumerate(files[1:]):
            target = split["archive-a" if n % 2 == 0 else "archive-b"] / person
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target / src.name)
    engine = Engine(root / "store", Settings(workers=2))
    engine.ingest([split["archive-a"]], "archive-a", basis="legitimate-interests", purpose="newsroom archive")
    engine.ingest([split["archive-b"]], "archive-b", basis="consent", purpose="event photos")
    yield engine, probes
    engine.close()


def identity_of(path: str) -> str:
    return Path(path).parent.name


def test_same_person_found_at_rank_one_across_collections(gallery):
    engine, probes = gallery
    results = engine.search([str(p) for p in probes.values()], purpose="test: rank-1")
    misses = []
    collections_hit = set()
    for person, result in zip(probes, results, strict=True):
        assert result.error is None, result.error
        searched = [f for f in result.faces if f.status == "searched"]
        best = max((c for f in searched for c in f.candidates[:1]), key=lambda c: c.score, default=None)
        if best is None or identity_of(best.path) != person:
            misses.append((person, best and identity_of(best.path)))
        else:
            collections_hit.add(best.collection)
    assert not misses, f"rank-1 misses: {misses}"
    assert collections_hit == {"archive-a", "archive-b"}


# The one measured exception: Kate Siegel's probe scores 0.937 against a small (330x512) photo of Angelina
# Jolie, a look-alike pair at a false-match rate of ~3e-4 by the LFW calibration. At the default operating
# point (FMR 1e-3 for small galleries) the policy itself expects ~0.08 false candidates per probe face
# in this 80-face gallery, ~0.8 over the 10 strangers, so one such candidate is what the rate predicts.
KNOWN_LOOKALIKES = {("Kate_Siegel", "Angelina_Jolie")}


def test_strangers_stay_below_the_default_threshold(gallery, faces_dir):
    engine, _ = gallery
    probes = [photos(faces_dir, p)[0] for p in STRANGERS]
    results = engine.search([str(p) for p in probes], purpose="test: impostors")
    searched = [f for r in results for f in r.faces or [] if f.status == "searched"]
    assert len(searched) >= len(STRANGERS) - 1  # every stranger photo has a usable face
    false_matches = [(identity_of(r.probe), identity_of(c.path), c.score, c.fmr)
                     for r in results for f in r.faces or [] for c in f.candidates]
    expected_false = sum(f.expected_false_candidates for f in searched)
    assert 0.1 < expected_false < 2  # the reported expectation is the calibrated N x FMR
    assert len(false_matches) <= 1, false_matches
    assert {(a, b) for a, b, _, _ in false_matches} <= KNOWN_LOOKALIKES
    assert all(fmr is not None and fmr < 1e-3 for *_, fmr in false_matches)


def test_every_candidate_carries_its_error_rate_and_provenance(gallery):
    engine, probes = gallery
    result = engine.search([str(probes["Katy_Perry"])], purpose="test: fields")[0]
    face = next(f for f in result.faces if f.candidates)
    data = result.to_dict()["faces"][result.faces.index(face)]
    assert data["note"] == "candidates for human review"
    assert face.threshold is not None and face.threshold > 0.5
    for cand in data["candidates"]:
        assert cand["score"] >= face.threshold
        assert Path(cand["path"]).is_file()
        left, top, right, bottom = cand["box"]
        assert 0 <= left < right and 0 <= top < bottom
        assert cand["collection"] in {"archive-a", "archive-b"}
    scores = [c["score"] for c in data["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_search_requires_a_purpose(gallery, faces_dir):
    engine, probes = gallery
    with pytest.raises(PolicyError):
        engine.search([str(probes["Cai_Xukun"])], purpose="  ")


def test_unreadable_probe_gets_an_error_not_an_exception(gallery, tmp_path):
    engine, _ = gallery
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = engine.search([str(bad)], purpose="test: bad probe")[0]
    assert result.faces is None and result.error


def test_verify_same_and_different(gallery, faces_dir):
    engine, _ = gallery
    jolie = photos(faces_dir, "Angelina_Jolie")
    same = engine.verify(str(jolie[0]), str(jolie[2]))
    other = engine.verify(str(jolie[0]), str(photos(faces_dir, "Tom_Hanks")[0]))
    assert same.same_person and not other.same_person
    assert same.score > other.score


def test_searches_are_audited_with_their_purpose(gallery):
    engine, probes = gallery
    engine.search([str(probes["John_Simm"])], purpose="case 2026-114")
    events = engine.audit.events(action="search")
    assert events[-1].purpose == "case 2026-114"
    assert engine.audit.verify() == []
