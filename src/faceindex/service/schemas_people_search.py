"""Request and response models of the fused searches (by person, by several photos of one person) and of the
privacy routes by person. Responses extend the search JSON (schemas.SearchPublic) with a `fused` object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from faceindex.service.deps import MAX_INT
from faceindex.service.schemas import CandidatePublic, OptOutPublic, ProbeFacePublic

PERSON_REF = "A person's id (a number, or digits) or the exact name an operator gave it."


def person_ref(value: int | str) -> int | str:
    """A person reference as the people layer takes it: digits become an id, which must fit SQLite's INTEGER
    (a bigger one would be an OverflowError deep in the store, not a clear 422); a name is kept as given."""
    if isinstance(value, str) and not 1 <= len(value) <= 200:
        raise ValueError("a person name has 1 to 200 characters")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not 0 <= value <= MAX_INT:
        raise ValueError(f"a person id is between 0 and {MAX_INT}")
    return value


PersonRef = Annotated[int | str, AfterValidator(person_ref), Field(description=PERSON_REF)]


class PersonSearchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: PersonRef
    purpose: str = Field(min_length=1, max_length=500, description="Purpose or case reference (audited).")
    top_k: int | None = Field(None, ge=1, le=100, description="Candidates to return.")
    threshold: float | None = Field(None, ge=-1, le=1, description="Admin only: overrides the calibrated threshold.")


class FusedCandidatePublic(CandidatePublic):
    score: float = Field(description="Fused score: cosine to the mean faceprint of the probes; higher is more alike.")
    fmr: float | None = Field(description="False-match rate of the fused score for this many probes (None: "
                              "uncalibrated).")
    best_single: float | None = Field(description="Best score of any one probe face alone.")
    person: int | None = Field(description="The person (people grouping) this face belongs to, if any.")
    person_name: str | None = Field(description="That person's name, if an operator named it.")


class FusedFacePublic(ProbeFacePublic):
    box: list[int] | None = Field(description="None: the probe is several faces fused, not one box.")
    candidates: list[FusedCandidatePublic]


class FusedInfoPublic(BaseModel):
    route: Literal["person", "photos"] = Field(description="A person's faces, or several uploaded photos.")
    probes: int = Field(description="How many faces were fused into the probe.")
    source: str = Field(description="'confirmed' (the person's confirmed faces), 'assigned' (all its faces: none "
                        "confirmed yet) or 'photos'.")
    person: int | None
    name: str | None
    probe_faces: list[dict] = Field(description="Person route: {face_id, state}; photos route: {photo, face "
                                    "(1-based, largest first), of, box}.")
    skipped: list[dict] = Field(description="Photos route: {photo, reason} of each photo without a usable face.")
    warnings: list[str] = Field(description="E.g. two photos that may not show one person.")
    calibration: str = Field(description="How the fused threshold and FMRs were obtained.")


class FusedSearchPublic(BaseModel):
    """The shape of SearchPublic (one probe face: the fused probe) plus `fused`, what was fused and how."""

    probe: str
    gallery_size: int
    fused: FusedInfoPublic
    faces: list[FusedFacePublic]


class PersonOptOutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: PersonRef
    reference: str | None = Field(None, max_length=500, description="Request reference (audited).")


class PersonOptOutPublic(OptOutPublic):
    templates: int = Field(description="Protected templates kept, one per face of the person.")
    person: int | None = Field(description="The person opted out (its record and name are erased with its faces).")
