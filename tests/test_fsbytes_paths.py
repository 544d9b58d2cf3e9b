"""A photo whose file name is not valid UTF-8 (stored as `fsbytes:` provenance) can be removed by path, erased by
image, enrolled from and shown in an access report: every layer maps paths through store.uris, none through
`Path(uri)` or `str(path.resolve())` (which cannot be bound as SQL text)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from privacy_support import PRESS, SELFIES, open_engine

from faceindex.ingest import scanner
from faceindex.store import uris

ODD = b"\xff\xfe.jpg"


@pytest.fixture()
def odd_store(faces_dir, tmp_path):
    """Jack Dorsey's press photos, one of them renamed to a name that is not UTF-8; the store; the odd path."""
    photos = tmp_path / "photos"
    photos.mkdir()
    files = PRESS["Jack_Dorsey"]
    for name in files[1:]:
        shutil.copy(faces_dir / "people" / "Jack_Dorsey" / name, photos / name)
    odd = os.path.join(os.fsencode(photos), ODD)
    shutil.copy(faces_dir / "people" / "Jack_Dorsey" / files[0], os.fsdecode(odd))
    with open_engine(tmp_path / "store") as engine:
        report = engine.ingest([photos], "press", basis="legitimate-interests", purpose="press archive")
        assert report.counts()["indexed"] == len(files), report.counts()
    return tmp_path / "store", odd


def odd_uri(odd: bytes) -> str:
    return uris.path_to_uri(odd)


def test_the_scanner_reexports_the_store_helpers():
    assert scanner.path_to_uri is uris.path_to_uri and scanner.uri_to_path is uris.uri_to_path
    assert scanner.BYTES_URI_PREFIX == uris.BYTES_URI_PREFIX


@pytest.mark.parametrize("form", ["str", "bytes", "uri"])
def test_a_photo_with_a_non_utf8_name_is_removed_by_path(odd_store, form):
    store, odd = odd_store
    ref = {"str": os.fsdecode(odd), "bytes": odd, "uri": odd_uri(odd)}[form]
    with open_engine(store) as engine:
        assert odd_uri(odd).startswith(uris.BYTES_URI_PREFIX)
        assert len(engine.catalog.images_by_uri(odd_uri(odd))) == 1
        assert engine.remove_image(ref) >= 1
        assert engine.catalog.images_by_uri(odd_uri(odd)) == []
        assert engine.stats()["images"] == len(PRESS["Jack_Dorsey"]) - 1  # only that one went


def test_a_photo_with_a_non_utf8_name_is_erased_by_image(odd_store):
    store, odd = odd_store
    with open_engine(store) as engine:
        plan = engine.privacy.plan_erasure(image=os.fsdecode(odd), case="case 9")
        assert plan.image_ids == [engine.catalog.images_by_uri(odd_uri(odd))[0]["id"]]
        result = engine.privacy.erase(plan)
        assert result.images == 1 and result.faces >= 1
        assert engine.catalog.images_by_uri(odd_uri(odd)) == []
    assert Path(os.fsdecode(odd)).is_file()  # the operator's own file is never touched


def test_a_photo_with_a_non_utf8_name_shows_in_an_access_report_and_enrols(odd_store, faces_dir, tmp_path):
    store, odd = odd_store
    selfie = faces_dir / "people" / "Jack_Dorsey" / SELFIES["Jack_Dorsey"]
    with open_engine(store) as engine:
        report = engine.privacy.access_report(selfie, tmp_path / "report", case="case 10")
        entry = [i for i in report.data["images"] if i["path"] == odd_uri(odd)]
        assert entry and entry[0]["available"] is True  # found, and its picture decoded from the exact bytes
        enrolled = engine.privacy.subjects.enrol("Jack", [os.fsdecode(odd)], collection="press", case="case 11")
        assert enrolled.skipped == [] and len(enrolled.linked) == 1
