"""Collection policy and search guardrails on real photos: basis and purpose, purpose per search, capped
candidates for human review, refused probes with a reason, two faces of one photo flagged."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter
from privacy_support import open_engine, pipeline, selfie, settings

from faceindex.engine import Engine
from faceindex.errors import InvalidInputError, PolicyError
from faceindex.pipeline.analyse import FacePipeline


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_collections_carry_policy_and_ingest_refuses_without_basis_and_purpose(tmp_path, root):
    with Engine(tmp_path / "s") as engine:
        made = engine.create_collection("staff", "legal-obligation", "  payroll badges ", jurisdictions=["de", "US-IL"],
                                        retention_days=365, owner="HR")
        assert (made.legal_basis, made.purpose, made.jurisdictions, made.retention_days, made.owner) == \
            ("legal-obligation", "payroll badges", ("DE", "US-IL"), 365, "HR")
        with pytest.raises(PolicyError, match="basis"):
            engine.ingest([root / "photos/press/Rose_Leslie"], "nobasis")
        with pytest.raises(PolicyError):
            engine.ingest([root / "photos/press/Rose_Leslie"], "nopurpose", basis="consent")
        with pytest.raises(InvalidInputError, match="legal basis"):
            engine.create_collection("x", "because", "p")
        with pytest.raises(InvalidInputError, match="purpose"):
            engine.create_collection("y", "consent", "   ")
        assert [c.name for c in engine.catalog.list_collections()] == ["staff"]
        assert engine.stats()["images"] == 0


def test_search_needs_a_purpose_and_caps_candidates_for_human_review(store, root, faces_dir):
    probe = str(selfie(root, "Jack_Dorsey"))
    with open_engine(store) as engine:
        for purpose in ("", "   "):
            with pytest.raises(PolicyError, match="purpose"):
                engine.search([probe], purpose)
        found = engine.search([probe], "case 12", top_k=10)[0].to_dict()
        assert len(found["faces"][0]["candidates"]) == 4
        assert found["faces"][0]["note"] == "candidates for human review"
        assert engine.audit.events(action="search")[-1].purpose == "case 12"
    capped = settings().model_copy(update={"max_candidates": 2})
    with Engine(store, capped, pipeline=pipeline()) as engine:
        assert len(engine.search([probe], "case 12", top_k=10)[0].faces[0].candidates) == 2
        stranger = engine.search([str(faces_dir / "people/Sundar_Pichai/deepface__img25.jpg")], "case 13")
        assert stranger[0].to_dict()["faces"][0]["note"] == "no match"  # nobody of this store


def test_poor_probes_are_refused_with_the_reason(store, root):
    original = Image.open(selfie(root, "Jack_Dorsey")).convert("RGB")
    blurred = _png(original.filter(ImageFilter.GaussianBlur(6)))
    with open_engine(store) as engine:
        face = engine.search([blurred], "case 14")[0].faces[0]
        assert face.status == "refused" and face.reason.startswith("too blurred") and face.candidates == []
    strict = FacePipeline(settings().model_copy(update={"min_face_px": 60}))
    small = _png(original.resize((120, round(original.height * 120 / original.width)), Image.Resampling.LANCZOS))
    with Engine(store, settings(), pipeline=strict) as engine:
        face = engine.search([small], "case 15")[0].faces[0]
        assert face.status == "refused" and face.reason.startswith("too small") and "< 60 px" in face.reason


def test_two_faces_of_one_photo_are_flagged(store, root, tmp_path):
    a = Image.open(root / "photos/press/Jack_Dorsey/deepface__img17.jpg").convert("RGB")
    b = Image.open(root / "photos/press/Jack_Dorsey/deepface__img62.jpg").convert("RGB")
    b = b.resize((round(b.width * a.height / b.height), a.height))
    both = Image.new("RGB", (a.width + b.width, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    folder = tmp_path / "composite"
    folder.mkdir()
    both.save(folder / "twice.jpg", quality=95)
    with open_engine(store) as engine:
        engine.ingest([folder], "composites", basis="contract", purpose="test")
        candidates = engine.search([str(selfie(root, "Jack_Dorsey"))], "case 16")[0].faces[0].candidates
    twice = [c for c in candidates if c.path.endswith("twice.jpg")]
    assert len(twice) == 2
    assert twice[0].same_photo_as == [twice[1].face_id] and twice[1].same_photo_as == [twice[0].face_id]
    assert all(c.same_photo_as == [] for c in candidates if not c.path.endswith("twice.jpg"))
