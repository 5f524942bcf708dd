"""`stance label`: order, crash-safe label file, undo, hand edits, and real terminal sessions."""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from pipeline import LABELS, prepare
from pipeline.errors import StanceError
from pipeline.label_session import (LabelFile, LabelSession, annotator_lock, check_annotator, model_guesses,
                                    order_paragraphs, run_session, uncertainty)
from pipeline.labels import read_label_file

ROOT = Path(__file__).parent.parent
STANCE = ROOT / ".venv" / "bin" / "stance"
ID = re.compile(r"id (p[0-9a-f]{16})\)")


@pytest.fixture
def prepared(project) -> dict:
    prepare.run(project)
    return project


def labels_path(params: dict, annotator: str) -> Path:
    return Path(params["paths"]["labels_dir"]) / f"{annotator}.csv"


def rows_of(path: Path) -> list[tuple[str, str, str]]:
    return [(r.paragraph_id, r.label, r.annotator) for r in read_label_file(path)]


def session(params: dict, keys, annotator: str = "second", **kwargs) -> tuple[dict, str]:
    out = io.StringIO()
    summary = run_session(params, annotator, keys=list(keys), out=out, err=io.StringIO(), **kwargs)
    return summary, out.getvalue()


def shown_ids(output: str) -> list[str]:
    return ID.findall(output)


# --- order -------------------------------------------------------------------------------------

def test_margin_and_entropy_put_the_least_sure_first():
    probabilities = {"sure": np.array([0.9, 0.05, 0.05]), "torn": np.array([0.45, 0.40, 0.15]),
                     "flat": np.array([0.34, 0.33, 0.33]), "lean": np.array([0.6, 0.3, 0.1])}
    ids = ["sure", "torn", "flat", "lean", "unseen"]
    margin = order_paragraphs(ids, probabilities, "margin", seed=1)
    assert margin[:4] == ["flat", "torn", "lean", "sure"] and margin[4] == "unseen"
    assert order_paragraphs(ids, probabilities, "entropy", seed=1)[:4] == ["flat", "torn", "lean", "sure"]
    assert uncertainty(np.array([[0.5, 0.5, 0.0]]), "margin")[0] == pytest.approx(1.0)


def test_random_order_is_seeded_and_nobody_labelled_comes_first():
    ids = [f"p{i}" for i in range(30)]
    first = order_paragraphs(ids, {}, "random", seed=7)
    assert first == order_paragraphs(ids, {}, "random", seed=7)
    assert first != order_paragraphs(ids, {}, "random", seed=8) and sorted(first) == sorted(ids)
    assert order_paragraphs(ids, {}, "document", seed=7) == ids
    elsewhere = {"p0", "p1", "p2"}
    ordered = order_paragraphs(ids, {}, "random", seed=7, labelled_elsewhere=elsewhere)
    assert set(ordered[-3:]) == elsewhere
    with pytest.raises(StanceError, match="unknown --order 'best'"):
        order_paragraphs(ids, {}, "best", seed=7)


def test_annotator_names_are_file_safe():
    assert check_annotator("jane.doe-2") == "jane.doe-2"
    for bad in ("", "../primary", "a b", "-x"):
        with pytest.raises(StanceError, match="annotator name"):
            check_annotator(bad)


# --- the model's guess ----------------------------------------------------------------------------

def test_guesses_from_trained_model_and_margin_order(trained_project):
    summary, output = session(trained_project, "q")
    records = prepare.run(trained_project)
    guesses, status = model_guesses(trained_project, [r.to_record() for r in records], embed=False)
    assert len(guesses) == len(records) and "guesses from" in status
    for p in guesses.values():
        assert p.sum() == pytest.approx(1.0)
    # primary labelled everything, so the order is pure margin order
    expected = order_paragraphs([r.id for r in records], guesses, "margin", trained_project["seed"])
    assert shown_ids(output) == expected[:1]
    assert re.search(r"Model guess: (favor|against|none) +\(favor 0\.\d\d  against 0\.\d\d  none 0\.\d\d\)", output)
    assert "order margin" in output and summary["saved"] == 0


def test_guesses_of_a_context_model_read_whole_documents(project, fake_embedder):
    """With the document context, a paragraph's guess is the same whichever paragraphs are asked about:
    its context comes from all the paragraphs of its document (the embed stage's output)."""
    from pipeline import embed, train
    from pipeline.features import document_context, model_inputs
    from pipeline.model_store import load_model

    project["train"]["feature_params"] = {**project["train"]["feature_params"], "context_weight": 0.5}
    records = [r.to_record() for r in prepare.run(project)]
    embed.run(project, embedder=fake_embedder)
    train.run(project)
    everything, _ = model_guesses(project, records, embed=False)
    some = records[1::3]  # one paragraph of each document
    assert set(model_guesses(project, some, embed=False)[0]) == {r["id"] for r in some}
    for record in some:
        assert np.allclose(model_guesses(project, some, embed=False)[0][record["id"]], everything[record["id"]])
    # and it is what the estimator gives with each document's full context
    estimator, _ = load_model(project["paths"]["model"], project["paths"]["model_meta"])
    vectors = fake_embedder.encode([r["text"] for r in records])
    context = document_context(vectors, [r["doc"] for r in records])
    expected = estimator.predict_proba(model_inputs([r["text"] for r in records], vectors, context))
    got = np.array([everything[r["id"]] for r in records])
    assert np.allclose(got[:, [LABELS.index(label) for label in estimator.classes_]], expected, atol=1e-5)


def test_paragraph_unknown_to_embed_stage_is_embedded_only_when_allowed(trained_project, fake_embedder):
    records = [r.to_record() for r in prepare.run(trained_project)]
    new = {"id": "pnew", "doc": "doc-0", "position": 9, "kind": "authored",
           "text": "Washington and Beijing will coordinate sanctions closely."}
    guesses, _ = model_guesses(trained_project, records + [new], embed=False)
    assert "pnew" not in guesses and len(guesses) == len(records)
    guesses, _ = model_guesses(trained_project, records + [new], embedder=fake_embedder)
    assert "pnew" in guesses and fake_embedder.calls[-1] == 1  # only the new paragraph is encoded


def test_no_model_means_no_guess_and_random_order(prepared):
    _, output = session(prepared, "q")
    assert "Model guess: not available" in output
    assert "order random (no model for margin)" in output and "no trained model yet" in output


def test_no_guess_option_hides_the_guess(trained_project):
    _, output = session(trained_project, "q", show_guess=False)
    assert "Model guess: hidden" in output and "favor 0." not in output


# --- answering, undo, skip, bad keys ---------------------------------------------------------------

def test_answers_are_appended_and_undo_removes_only_the_last(prepared):
    summary, output = session(prepared, ["f", "a", "x", "\x1b[A", "ff", "\r", "u", "n", "q"])
    shown = shown_ids(output)
    path = labels_path(prepared, "second")
    first, second = shown[0], shown[1]
    assert rows_of(path) == [(first, "favor", "second"), (second, "none", "second")]
    assert "'x' is not a key here" in output and "An arrow, function or Escape key is not a key" in output
    assert "2 characters at once (a paste?)" in output and "Enter is not a key here" in output
    assert "Nothing was saved or lost" in output
    assert f"Undid {second} = against" in output
    assert summary == {"annotator": "second", "path": str(path), "saved": 2, "labelled": 2, "remaining": 22}
    assert path.read_text().startswith("paragraph_id,label,annotator,note\n")


def test_skip_and_undo_of_a_skip_and_nothing_to_undo(prepared):
    _, output = session(prepared, ["u", "s", "u", "f", "q"])
    shown = shown_ids(output)
    assert "Nothing to undo in this session" in output
    assert shown[2] != shown[0] and shown[3] == shown[0]  # skip moves on, undo brings it back
    assert rows_of(labels_path(prepared, "second")) == [(shown[0], "favor", "second")]


def test_second_session_resumes_and_skipped_come_back(prepared):
    _, first = session(prepared, ["f", "s", "q"])
    a, skipped = shown_ids(first)[:2]
    _, second = session(prepared, ["q"])
    assert shown_ids(second)[0] == skipped and "23 to go" in second
    assert rows_of(labels_path(prepared, "second")) == [(a, "favor", "second")]


def test_resume_file_with_bom_crlf_and_no_final_newline(prepared):
    records = [r.to_record() for r in prepare.run(prepared)]
    path = labels_path(prepared, "second")
    path.write_bytes(b"\xef\xbb\xbfparagraph_id,label,annotator,note\r\n"
                     + f'{records[0]["id"]},against,second,"typed, by hand"'.encode())
    summary, output = session(prepared, ["n", "q"], order="document")
    assert shown_ids(output)[0] == records[1]["id"]
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.endswith(f"{records[1]['id']},none,second,\r\n".encode())
    assert b'"typed, by hand"\r\n' in data
    assert [r[:2] for r in rows_of(path)] == [(records[0]["id"], "against"), (records[1]["id"], "none")]
    assert summary["labelled"] == 2


def test_all_labelled_says_so(prepared):
    records = [r.to_record() for r in prepare.run(prepared)]
    _, output = session(prepared, ["f"] * len(records) + ["f", "q"], order="document")
    assert "Nothing left to label for second" in output and "Nothing left to label. Press q" in output
    assert len(rows_of(labels_path(prepared, "second"))) == len(records)


# --- the label file changing under the session --------------------------------------------------

def make_session(params: dict, annotator: str = "second") -> LabelSession:
    records = [r.to_record() for r in prepare.run(params)]
    s = LabelSession(records, [r["id"] for r in records], LabelFile(labels_path(params, annotator), annotator))
    s.start()
    return s


def test_hand_edit_is_noticed_and_not_clobbered(prepared):
    s = make_session(prepared)
    s.press("f")
    path = labels_path(prepared, "second")
    on_screen = s.current
    with open(path, "a", encoding="utf-8") as handle:  # someone labels the paragraph on screen by hand
        handle.write(f"{on_screen},against,second,by hand\n")
    s.press("n")
    assert "changed on disk" in s.message and "was not applied" in s.message
    assert s.current != on_screen
    s.press("a")
    rows = rows_of(path)
    assert rows[1] == (on_screen, "against", "second") and rows[2] == (s.order[2], "against", "second")
    assert len(rows) == 3


def test_hand_removed_label_comes_back_and_undo_tolerates_it(prepared):
    s = make_session(prepared)
    first = s.current
    s.press("f")
    path = labels_path(prepared, "second")
    path.write_text("paragraph_id,label,annotator,note\n", encoding="utf-8")  # hand edit: row deleted
    s.press("u")
    assert "changed on disk" in s.message and "was no longer in" in s.message
    assert s.current == first
    s.press("a")
    assert rows_of(path) == [(first, "against", "second")]


def test_invalid_file_blocks_writing_until_fixed(prepared):
    s = make_session(prepared)
    s.press("f")
    path = labels_path(prepared, "second")
    good = path.read_text()
    path.write_text(good + "pxyz,favour,second,\n", encoding="utf-8")
    s.press("a")
    assert s.blocked and "unknown label 'favour'" in s.blocked
    assert "cannot be used" in s.render()
    s.press("a")
    assert path.read_text() == good + "pxyz,favour,second,\n"  # nothing written while invalid
    path.write_text(good, encoding="utf-8")
    shown = s.current
    s.press("n")  # only re-checks
    assert s.blocked is None and "changed on disk" in s.message and s.current == shown
    s.press("n")
    assert len(rows_of(path)) == 2


def test_invalid_file_at_start_is_an_error(prepared):
    path = labels_path(prepared, "second")
    path.write_text("paragraph_id,label\np1,favor\n", encoding="utf-8")
    with pytest.raises(StanceError, match=r"second.csv:1: missing columns annotator, note"):
        session(prepared, ["q"])


def test_one_session_per_annotator(prepared):
    path = labels_path(prepared, "second")
    with annotator_lock(path, "second"):
        with pytest.raises(StanceError, match="session for second is already running"):
            session(prepared, ["q"])
        session(prepared, ["f", "q"], annotator="third")  # another annotator is fine
    session(prepared, ["q"])


# --- a real terminal ------------------------------------------------------------------------------

pexpect = pytest.importorskip("pexpect")


def spawn(params_file: Path, annotator: str, *extra: str, ignore_sigint: bool = False):
    """`stance label` on a pseudo-terminal; `ignore_sigint` starts it with SIGINT ignored, as a shell
    does for a background job without job control."""
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "STANCE_LABEL_EMBED": "0", "COLUMNS": "120"}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    child = pexpect.spawn(str(STANCE), ["label", "--params", str(params_file), "--annotator", annotator, *extra],
                          cwd=str(params_file.parent), env=env, encoding="utf-8", timeout=60,
                          dimensions=(40, 120), preexec_fn=ignore)
    return child


def screen(child) -> str:
    """Wait for the prompt of the next screen; return that screen, wrapped lines joined."""
    child.expect(r"\[\?\] help\r?\n> ")
    return " ".join(child.before.split())


def current_id(text: str) -> str:
    return ID.findall(text)[-1]


def test_terminal_session_killed_then_resumed(prepared, tmp_path):
    params_file = tmp_path / "params.yaml"
    path = labels_path(prepared, "second")
    child = spawn(params_file, "second")
    first = current_id(screen(child))
    child.send("f")
    text = screen(child)
    assert f"Saved {first} as favor" in text
    second = current_id(text)
    child.send("x")
    assert "'x' is not a key here" in screen(child)
    child.send("a")
    text = screen(child)
    third = current_id(text)
    assert f"Saved {second} as against" in text and "2 saved this session" in text
    os.kill(child.pid, signal.SIGKILL)  # with the third paragraph on screen
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus == signal.SIGKILL
    assert rows_of(path) == [(first, "favor", "second"), (second, "against", "second")]
    assert path.read_bytes().endswith(b"\n")

    child = spawn(params_file, "second")
    text = screen(child)
    assert current_id(text) == third and "22 to go" in text
    child.send("u")
    assert "Nothing to undo in this session" in screen(child)
    child.send("n")
    assert f"Saved {third} as none" in screen(child)
    child.send("u")
    text = screen(child)
    assert f"Undid {third} = none" in text and current_id(text) == third
    with open(path, "a", encoding="utf-8") as handle:  # a hand edit while the session is open
        handle.write(f"{third},favor,second,typed by hand\n")
    child.send("a")
    text = screen(child)
    assert "changed on disk" in text and "was not applied" in text
    child.send("q")
    child.expect(r"0 labels saved this session; .*second\.csv has 3 labels by second")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert rows_of(path) == [(first, "favor", "second"), (second, "against", "second"), (third, "favor", "second")]


def test_two_annotators_at_once_and_same_annotator_refused(trained_project, tmp_path):
    params_file = tmp_path / "params.yaml"
    one, two = spawn(params_file, "ann"), spawn(params_file, "bob", "--order", "random", ignore_sigint=True)
    assert "Model guess:" in screen(one) and "Model guess:" in screen(two)
    again = spawn(params_file, "ann")
    again.expect("session for ann is already running")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 1
    for _ in range(3):
        one.send("f")
        two.send("n")
        screen(one)
        screen(two)
    one.send("q")
    two.sendcontrol("c")  # Ctrl-C quits cleanly too, even if the process inherited SIGINT ignored
    for child in (one, two):
        child.expect("3 labels saved this session")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    assert [r[1:] for r in rows_of(labels_path(trained_project, "ann"))] == [("favor", "ann")] * 3
    assert [r[1:] for r in rows_of(labels_path(trained_project, "bob"))] == [("none", "bob")] * 3


def test_keys_from_a_pipe_through_the_cli(prepared, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["label", "--params", str(tmp_path / "params.yaml"), "-a", "piped",
                                      "--order", "document"], input="f\na\nq\n")
    assert result.exit_code == 0, result.output
    assert "2 labels saved this session" in result.output
    records = [r.to_record() for r in prepare.run(prepared)]
    assert rows_of(labels_path(prepared, "piped")) == [(records[0]["id"], "favor", "piped"),
                                                       (records[1]["id"], "against", "piped")]
    result = CliRunner().invoke(app, ["label", "--params", str(tmp_path / "params.yaml"), "-a", "../x"])
    assert result.exit_code == 1 and "annotator name '../x'" in result.output
    result = CliRunner().invoke(app, ["label", "--params", str(tmp_path / "params.yaml"), "-a", "x", "--order", "best"])
    assert result.exit_code == 1 and "unknown --order 'best'" in result.output
