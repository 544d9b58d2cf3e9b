"""The privacy commands end to end through the CLI, on a copy of the real-photo store."""

from __future__ import annotations

import json

import pytest
from privacy_support import add_aniston, fresh_copy, open_engine, pristine, privacy_cli, selfie
from typer.testing import CliRunner


@pytest.fixture()
def env(faces_dir, tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEINDEX_WORKERS", "1")  # 2 shared cores: no process pool in tests
    root = pristine(faces_dir, tmp_path_factory)
    store = fresh_copy(faces_dir, tmp_path_factory, tmp_path)
    runner = CliRunner()
    app = privacy_cli()

    def run(*args: str, input: str | None = None):
        result = runner.invoke(app, [*args, "--store", str(store)], input=input)
        return result

    return root, store, run


def test_enrol_consent_subjects(env):
    root, store, run = env
    enrolled = run("enrol", "John Simm", str(root / "photos/canada/John_Simm"), "-c", "canada",
                   "--consent-evidence", "form 1", "--jurisdiction", "CA", "--json")
    assert enrolled.exit_code == 0, enrolled.output
    data = json.loads(enrolled.output)
    assert len(data["linked_faces"]) == 3 and data["subject"]["consent"] == "given"
    listed = json.loads(run("subjects", "--json").output)
    assert [(s["name"], s["faces"], s["jurisdictions"]) for s in listed] == [("John Simm", 3, ["CA"])]
    withdrawn = run("consent", "John Simm", "withdraw", "--evidence", "letter", "--json")
    assert withdrawn.exit_code == 0, withdrawn.output
    assert json.loads(withdrawn.output)["erasure"]["faces"] == 3
    refused = run("enrol", "Nobody", str(root / "photos/canada/John_Simm"), "-c", "canada")
    assert refused.exit_code == 2 and "consent" in refused.output


def test_forget_by_selfie_lists_and_asks_first(env):
    root, store, run = env
    probe = str(selfie(root, "Mark_Zuckerberg"))
    dry = run("forget", "--selfie", probe, "--json")  # --json without --yes never erases
    plan = json.loads(dry.output)
    assert dry.exit_code == 0 and plan["erased"] is False and len(plan["plan"]["matches"]) == 4
    both = json.loads(run("forget", "--selfie", probe, "--selfie", str(selfie(root, "Jack_Dorsey")), "--dry-run",
                          "--json").output)["plan"]
    assert len(both["matches"]) == 8 and both["selfies"] == 2  # several selfies: the union of their matches
    unanswered = run("forget", "--selfie", probe, input="")  # a script without --yes: the question meets EOF
    assert unanswered.exit_code == 2 and "nothing done" in unanswered.stderr
    declined = run("forget", "--selfie", probe, input="n\n")
    assert declined.output.count("│ press") == 4 and "nothing erased" in declined.output  # 4 rows listed
    done = run("forget", "--selfie", probe, "--yes", "--case", "DSR-3", "--json")
    result = json.loads(done.output)["result"]
    assert (result["faces"], result["verified"]) == (4, True)
    with open_engine(store) as engine:
        assert engine.search([probe], "check")[0].faces[0].candidates == []


def test_forget_other_routes_and_opt_out(env):
    root, store, run = env
    assert run("forget", "--collection", "canada", "--expand", "--yes").exit_code == 2  # expand: selfies only
    listed = run("forget", "--selfie", str(selfie(root, "Jack_Dorsey")), "--expand", "--dry-run", "--json")
    assert json.loads(listed.output)["plan"]["expanded"] is True and not json.loads(listed.output)["erased"]
    assert run("forget", "--collection", "canada", "--yes").exit_code == 0
    assert run("forget", "--jurisdiction", "CA", "--yes", "--json").exit_code == 0  # nothing left: still audited
    image = str(root / "photos/press/Rose_Leslie/face_recognition__img1.jpg")
    assert json.loads(run("forget", "--image", image, "--yes", "--json").output)["result"]["images"] == 1
    bad = run("forget", "--jurisdiction", "Canada", "--yes")
    assert bad.exit_code == 2 and "ISO 3166" in bad.output
    opted = run("opt-out", str(selfie(root, "Jack_Dorsey")), "--reference", "req 9", "--json")
    assert opted.exit_code == 0, opted.output
    assert json.loads(opted.output)["erasure"]["faces"] == 4
    optout_id = json.loads(opted.output)["optout_id"]
    assert [r["reference"] for r in json.loads(run("opt-outs", "--json").output)] == ["req 9"]
    refused = run("opt-out-withdraw", str(optout_id))
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert run("opt-out-withdraw", str(optout_id), "--yes", "--case", "req 10").exit_code == 0
    assert json.loads(run("opt-outs", "--json").output) == []
    assert run("opt-out-withdraw", str(optout_id), "--yes").exit_code == 2  # already gone: not found
    with open_engine(store) as engine:
        routes = [e.params["route"] for e in engine.audit.events(action="erase")]
        assert routes == ["collection", "jurisdiction", "image", "opt-out"]
        assert engine.audit.verify() == []


def test_access_report_and_redact(env, tmp_path):
    root, store, run = env
    assert run("enrol", "Kit", str(root / "photos/press/Kit_Harington"), "-c", "press").exit_code == 0
    report = run("access-report", str(selfie(root, "Kit_Harington")), "--out", str(tmp_path / "sar"), "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["images"] == 3 and (tmp_path / "sar/report.html").exists()
    redacted = run("redact", str(root / "photos/press/face_recognition__kit_with_rose.jpg"), "--keep-subject", "Kit",
                   "--out", str(tmp_path / "r.jpg"), "--json")
    assert redacted.exit_code == 0, redacted.output
    assert json.loads(redacted.output)["blurred"] == 1 and (tmp_path / "r.jpg").stat().st_size > 10_000


def test_enrol_with_a_photo_it_cannot_use_enrols_the_rest_and_exits_1(env):
    root, store, run = env
    group = root / "photos/press/face_recognition__kit_with_rose.jpg"  # two faces: which one is Kit is a guess
    result = run("enrol", "Kit", str(root / "photos/press/Kit_Harington"), str(group), "-c", "press", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    linked = data["linked_faces"]
    assert linked and [s["photo"] for s in data["skipped"]] == [str(group)]
    assert "1 photo(s) not enrolled" in result.stderr
    assert [s["faces"] for s in json.loads(run("subjects", "--json").stdout)] == [len(linked)]  # the rest enrolled


def test_forget_by_selfie_shows_what_search_still_finds_and_erases_it_by_face_id(env, faces_dir, tmp_path):
    root, store, run = env
    probe = str(add_aniston(faces_dir, store, tmp_path / "aniston"))
    plan = json.loads(run("forget", "--selfie", probe, "--dry-run", "--json").stdout)["plan"]
    left = [m["face_id"] for m in plan["also_found_by_search"]]
    assert len(plan["matches"]) == 3 and len(left) == 2
    shown = run("forget", "--selfie", probe, "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "NOT in this erasure: 2 more face(s) an ordinary search finds" in " ".join(shown.stdout.split())
    assert "--include-face ID" in shown.stdout
    included = [arg for fid in left for arg in ("--include-face", str(fid))]
    done = run("forget", "--selfie", probe, *included, "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["result"]["faces"] == 5
    with open_engine(store) as engine:  # nothing an ordinary search finds is left
        assert all(not f.candidates for f in engine.search([probe], "check")[0].faces)
