"""Request (…Create) and response (…Public) models of the REST API.

Responses are built from these models only, never from catalog rows, so an internal column (a faceprint,
a key hash, a session token) cannot leak by being added to a table.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faceindex.service.keys import ROLES
from faceindex.store.migrations import LEGAL_BASES

LegalBasis = Literal[LEGAL_BASES]  # type: ignore[valid-type]
Role = Literal[ROLES]  # type: ignore[valid-type]
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found, policy, unauthorized.")
    message: str


class ErrorResponse(BaseModel):
    """The one error shape of every route."""

    error: ErrorDetail


class Message(BaseModel):
    message: str


# -- collections and ingest ----------------------------------------------------------------
class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=COLLECTION_NAME,
                      description="Letters, digits, space, dot, dash, underscore; not only digits.")
    basis: LegalBasis = Field(description="Legal basis for processing these photos.")
    purpose: str = Field(min_length=1, max_length=1000, description="Why this collection is processed.")
    jurisdictions: list[str] = Field(default_factory=list, max_length=20, description="ISO 3166 codes, e.g. DE, US-IL.")
    retention_days: int | None = Field(None, gt=0, description="Faces are purged this many days after ingest.")
    owner: str | None = Field(None, max_length=200)
    grouping: bool | None = Field(None, description="May its faces be grouped into people (a processing purpose of "
                                  "its own)? Absent: on, the default; given, the choice is recorded and audited.")

    @field_validator("name")
    @classmethod
    def not_only_digits(cls, name: str) -> str:
        if name.isdigit():  # `/collections/{ref}` reads digits as an id
            raise ValueError("a collection name cannot be only digits (those address a collection by id)")
        return name


class CollectionPublic(BaseModel):
    id: int = Field(description="Use this in URLs (/collections/{id}), never the name.")
    name: str
    basis: str
    purpose: str
    jurisdictions: list[str]
    retention_days: int | None
    owner: str | None
    created_at: str
    images: int
    faces: int
    grouping: bool = Field(True, description="Whether its faces may be grouped into people.")


class FolderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096,
                      description="A folder or file on the server, inside one of the service's allowed folders.")


class SkippedFile(BaseModel):
    path: str
    reason: str


class VideoProgressPublic(BaseModel):
    name: str = Field(description="File name of the video being analysed.")
    done_s: float = Field(description="Seconds of it processed so far.")
    done: str = Field(description="The same as HH:MM:SS.mmm.")
    duration_s: float | None = Field(description="Its duration in seconds (None: the container does not say).")
    duration: str | None


class JobPublic(BaseModel):
    id: str
    kind: Literal["upload", "folder", "people.cluster", "people.cluster.full"]
    collection: str
    status: Literal["queued", "running", "done", "failed"]
    total: int | None = Field(description="Files found (known once the scan finished).")
    done: int = Field(description="Files handled so far.")
    counts: dict[str, int]
    skipped: list[SkippedFile]
    error: ErrorDetail | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    seconds: float | None
    actor: str
    video: VideoProgressPublic | None = Field(None, description="The video being analysed now, while one is.")


class DeletedPublic(BaseModel):
    images_removed: int = 0
    faces_removed: int


# -- search ---------------------------------------------------------------------------------
class VideoSpanPublic(BaseModel):
    track: int
    start: str = Field(description="HH:MM:SS.mmm from the video's start.")
    end: str
    start_s: float
    end_s: float


class VideoHitPublic(VideoSpanPublic):
    """The track (one person within one shot) a video candidate's face belongs to."""

    frames: int = Field(description="Analysed frames showing the face.")
    best: str = Field(description="Time of the best frame (HH:MM:SS.mmm).")
    best_s: float
    best_box: list[int] = Field(description="The face in the best frame: left, top, right, bottom (video px).")
    thumbnail: str | None = Field(description="URL of the best frame with the face boxed.")
    play: str = Field(description="URL of the video, with a #t= media fragment at the span's start.")
    spans: list[VideoSpanPublic] = Field(description="Every matched track of this video in this result.")


class CandidatePublic(BaseModel):
    face_id: int
    image_id: int
    path: str
    box: list[int] = Field(description="left, top, right, bottom in the photo's upright pixels.")
    collection: str
    score: float = Field(description="Cosine similarity; higher is more alike.")
    fmr: float | None = Field(description="Measured false-match rate at this score (None: uncalibrated model).")
    subject: str | None
    same_photo_as: list[int] = Field(description="Other candidates from the same photo: at most one can be right.")
    video: VideoHitPublic | None = Field(None, description="Set for a face of a video: its time span(s).")


class ProbeFacePublic(BaseModel):
    box: list[int]
    status: Literal["searched", "refused"]
    reason: str | None
    threshold: float | None
    threshold_fmr: float | None
    expected_false_candidates: float | None
    candidates: list[CandidatePublic]
    match: bool
    note: str | None = Field(description="'candidates for human review', 'no match', or why the face was refused.")


class SearchPublic(BaseModel):
    """Same shape as one line of `faceindex search --json`."""

    probe: str
    gallery_size: int
    faces: list[ProbeFacePublic]


class VerifyPublic(BaseModel):
    same_person: bool
    score: float
    threshold: float
    fmr: float | None


# -- images and faces -------------------------------------------------------------------------
class FacePublic(BaseModel):
    id: int
    image_id: int
    box: list[int]
    detector: str
    det_score: float
    size_px: int
    blur: float
    rejected: str | None = Field(description="Why no faceprint was stored (quality), or None.")
    model_id: str
    subject: str | None
    created_at: str


class ImagePublic(BaseModel):
    id: int
    collection: str
    collection_id: int
    path: str
    sha256: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    format: str | None
    captured_at: str | None
    ingested_at: str
    status: str
    error: str | None
    n_faces: int


class ImageDetailPublic(ImagePublic):
    faces: list[FacePublic]


class ImagePage(BaseModel):
    items: list[ImagePublic]
    total: int
    limit: int
    offset: int


class FacePage(BaseModel):
    items: list[FacePublic]
    total: int
    limit: int
    offset: int


class StatsPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    collections: int
    images: int
    skipped: int
    faces: int
    rejected_faces: int
    model_id: str | None
    index: str


# -- audit, keys, identity ------------------------------------------------------------------------
class AuditEventPublic(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    purpose: str | None
    params: dict
    counts: dict
    prev_hash: str
    hash: str


class AuditVerifyPublic(BaseModel):
    ok: bool
    events: int
    head: str | None
    problems: list[str]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role


class KeyPublic(BaseModel):
    id: int
    name: str
    role: str
    hint: str = Field(description="First characters of the key, to recognise it.")
    created_at: str
    revoked_at: str | None
    last_used_at: str | None
    active: bool


class KeyCreatedPublic(KeyPublic):
    key: str = Field(description="The secret: shown this once, only its hash is stored.")


class MePublic(BaseModel):
    name: str
    role: str
    via: Literal["key", "session"]
    permissions: list[str]


class HealthPublic(BaseModel):
    status: Literal["ok"]
    version: str


# -- privacy ------------------------------------------------------------------------------------------
class SubjectPublic(BaseModel):
    id: int
    name: str
    jurisdictions: list[str]
    created_at: str
    last_interaction_at: str
    faces: int
    consent: str | None = Field(description="Latest consent status: given, withdrawn, or None (never recorded).")


class ConsentPublic(BaseModel):
    id: int
    status: str
    at: str
    evidence: str | None
    scope: str | None


class SubjectDetailPublic(SubjectPublic):
    consents: list[ConsentPublic]
    face_ids: list[int]


class EnrolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    face_ids: list[int] = Field(min_length=1, max_length=1000, description="Indexed faces to link to the subject.")
    jurisdictions: list[str] = Field(default_factory=list, max_length=20)
    consent_evidence: str | None = Field(None, max_length=500, description="Reference to the consent record.")
    consent_scope: str | None = Field(None, max_length=500)
    case: str | None = Field(None, max_length=500, description="Case reference (audited).")


class EnrolPublic(BaseModel):
    subject: SubjectPublic
    linked: list[int]
    skipped: list[SkippedFile]


class ConsentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["given", "withdrawn"]
    evidence: str | None = Field(None, max_length=500)
    scope: str | None = Field(None, max_length=500)
    case: str | None = Field(None, max_length=500)


class ErasureResultPublic(BaseModel):
    route: str
    faces: int
    images: int
    collections: int
    subjects: int
    files_deleted: int
    complete: bool = Field(description="False: another reader held the store; it finishes at the next open.")
    verified: bool = Field(description="True: no store file holds an erased faceprint any more, apart from those "
                           "counted in shared_with_copies.")
    shared_with_copies: int = Field(0, description="Erased faceprints still held by identical photos kept in other "
                                    "collections (not covered by this erasure).")
    vectors_backend: str = Field("faiss", description="Where faceprints are searched: faiss, milvus-lite or milvus.")
    vectors_residue: str = Field("", description="Empty when the vector backend proves erasure byte by byte (faiss); "
                                 "otherwise what may still linger there and until when (never reported verified).")
    catalog_backend: str = Field("sqlite", description="Where the catalog's rows were deleted: sqlite or postgresql.")
    catalog_residue: str = Field("", description="Empty when the catalog proves erasure byte by byte (sqlite); on "
                                 "postgresql what may still linger there and until when (never reported verified).")
    upload_files_deleted: int = Field(0, description="Photos the service had kept for erased images.")
    upload_files_redacted: int = Field(
        0, description="Kept photos still showing other people, rewritten with the erased faces obscured.")


class ConsentResultPublic(BaseModel):
    subject: SubjectPublic
    status: str
    erasure: ErasureResultPublic | None


class ErasurePlanCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    route: Literal["subject", "collection", "jurisdiction", "image", "person"]
    value: str = Field(min_length=1, max_length=1000,
                       description="Subject name, collection name, ISO code, image id (an id, never a path), or a "
                       "person's id or name (people grouping).")
    case: str | None = Field(None, max_length=500)
    expand: bool = Field(False, description="Person route only: also the faces the person's fused probe finds at the "
                         "strict threshold that belong to no other person and were never rejected from this one.")
    include_faces: list[int] = Field(default_factory=list, max_length=10_000,
                                     description="Face ids to erase as well (e.g. from a plan's also_found_by_search).")


class ErasureMatch(BaseModel):
    face_id: int
    image_id: int
    path: str
    collection: str
    score: float
    same_photo_as: list[int]
    via: int | None = Field(None, description="With expand: the matched face whose faceprint found this one.")
    fmr: float | None = Field(None, description="False-match rate of the score (None: model not calibrated).")
    state: str | None = Field(None, description="Person route: 'confirmed' or 'auto' (the face's membership), or "
                              "'search' (added by expand).")


class ErasurePlanPublic(BaseModel):
    """An erasure prepared, not done: review what it would delete, then confirm with its id."""

    plan_id: str
    expires_at: str
    route: str
    faces: int
    images: int
    collections: int
    subjects: int
    people: int = Field(0, description="People of the grouping whose records (and names) go too.")
    matches: list[ErasureMatch] = Field(description="For a selfie or a person: every face it would delete, best "
                                        "match first.")
    also_found_by_search: list[ErasureMatch] = Field(
        default_factory=list, description="For a selfie: faces an ordinary search with it returns that this plan "
        "will NOT erase (erasure uses a stricter threshold). Review them; plan again with `include_faces` to add them.")
    search_threshold: float | None = Field(None, description="The ordinary search threshold for this gallery.")
    search_threshold_fmr: float | None = None
    included_faces: list[int] = Field(default_factory=list, description="Face ids added by hand (include_faces).")


class OptOutPublic(BaseModel):
    optout_id: int
    threshold: float
    erasure: ErasureResultPublic


class OptOutRecordPublic(BaseModel):
    id: int
    reference: str | None
    created_at: str
    scheme: str = Field(description="How the template is protected (keyed sign projection); never the bytes.")


class PurgeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bipa: bool | None = Field(None, description="Switch the store-wide BIPA mode on or off before purging.")
