"""`stance label`: the session's screen, crash-safe label file, undo, hand edits, and real terminal
sessions (the order and the guesses: test_label_queue.py)."""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpus import prepare
from pipeline.corpus.labels import read_label_file
from pipeline.errors import StanceError
from pipeline.labelling.label_file import LabelFile, annotator_lock, check_annotator
from pipeline.labelling.label_queue import OUT_OF_FOLD, order_paragraphs
from pipeline.labelling.label_session import KEY_LINE, LabelSession, run_session, shorten_middle
from test_label_queue import add_document, write_labels, write_predictions

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


def test_annotator_names_are_file_safe():
    assert check_annotator("jane.doe-2") == "jane.doe-2"
    for bad in ("", "../primary", "a b", "-x"):
        with pytest.raises(StanceError, match="annotator name"):
            check_annotator(bad)


# --- the model's guess ----------------------------------------------------------------------------

def test_unlabelled_first_by_uncertainty_with_model_and_out_of_fold_guesses(trained_project, fake_embedder):
    labelled = [r.to_record() for r in prepare.run(trained_project)]
    records = add_document(trained_project)
    oof = write_predictions(trained_project, labelled)
    new = [r["id"] for r in records if r["doc"] == "doc-new"]
    _, output = session(trained_project, ["s"] * 4 + ["q"], embedder=fake_embedder)
    screens = output.split("stance label | annotator")[1:]
    shown = shown_ids(output)
    assert set(shown[:3]) == set(new) and all("Guess (model): " in text for text in screens[:3])
    flat = " ".join(output.split())  # the status line wraps with the terminal
    assert "order margin" in flat and "out-of-fold guesses for 24 of 24 labelled paragraphs" in flat
    # then the labelled paragraphs, least sure first by their out-of-fold probabilities
    assert shown[3] == order_paragraphs([r["id"] for r in labelled], oof, "margin", 0)[0]
    assert re.search(r"Guess \(out-of-fold\): (favor|against|none) +\(favor 0\.\d\d  against 0\.\d\d  none 0\.\d\d\)",
                     screens[3])


def test_disagreements_come_after_unlabelled_and_before_the_rest(prepared):
    records = [r.to_record() for r in prepare.run(prepared)]
    ids = [r["id"] for r in records]
    write_labels(prepared, "primary", {pid: "none" for pid in ids[:20]})
    write_labels(prepared, "second", {ids[5]: "favor", ids[6]: "none"})
    _, output = session(prepared, ["s"] * 6 + ["q"], annotator="third", order="random")
    shown = shown_ids(output)
    assert set(shown[:4]) == set(ids[20:]) and shown[4] == ids[5] and shown[5] not in ids[20:] + [ids[5]]


def test_labelled_paragraphs_show_no_in_sample_guess(trained_project):
    _, output = session(trained_project, "q")  # everything is labelled and there is no predictions.csv
    assert "Guess: not available" in output and "Guess (" not in output
    flat = " ".join(output.split())
    assert "order random (no guesses for margin)" in flat and "predictions.csv is missing" in flat


def test_no_model_means_no_guess_and_random_order(prepared):
    _, output = session(prepared, "q")
    assert "Guess: not available" in output
    flat = " ".join(output.split())
    assert "order random (no guesses for margin)" in flat and "no trained model yet" in flat


def test_no_guess_option_hides_the_guess(trained_project, fake_embedder):
    labelled = [r.to_record() for r in prepare.run(trained_project)]
    write_predictions(trained_project, labelled)
    _, output = session(trained_project, "q", show_guess=False)
    assert "Guess: hidden" in output and "favor 0." not in output
    _, output = session(trained_project, "q")
    assert "Guess (out-of-fold): " in output and "favor 0." in output


# --- the screen ----------------------------------------------------------------------------------

def test_header_fits_80_columns_with_a_long_title_and_annotator_name(prepared):
    records = [r.to_record() for r in prepare.run(prepared)]
    name = "jane.the-annotator-with-an-extraordinarily-long-name_from-the-desk-0123"
    title = ("Why Washington and Beijing Must Keep Talking About the Korean Peninsula Even When Everything "
             "Else in Their Relationship Seems to Be Falling Apart")
    probabilities = {r["id"]: np.array([0.5, 0.3, 0.2]) for r in records}
    path = labels_path(prepared, name)
    s = LabelSession(records, [r["id"] for r in records], LabelFile(path, name), probabilities,
                     {"doc-0": title}, status="model guesses for 24 unlabelled paragraphs from " + "/very/long" * 9
                     + "/models/model.joblib; out-of-fold guesses for 0 of 0 labelled paragraphs",
                     order_name="random (no guesses for entropy)", sources={records[0]["id"]: OUT_OF_FOLD})
    s.start()
    s.message = f"{path} changed on disk (edited by hand?); re-read it: 0 labels by {name}."
    location = f"(doc-0, paragraph 1 of 3, id {records[0]['id']})"
    words = set(" ".join([title, name, str(path), s.status, s.message, s.order_name, location, KEY_LINE,
                          "stance label | annotator 0 saved this session 24 to go order labels file Document:",
                          "Guess (out-of-fold): favor (favor 0.50 against 0.30 none 0.20) >"]).split())
    for width in (80, 100, 40):
        lines = s.render(width).splitlines()
        assert max(len(line) for line in lines) <= width, [line for line in lines if len(line) > width]
        for line in lines:
            if not line.startswith((">>", "    ", "---")):  # the paragraph, its context, the rules
                assert all(word in words or "…" in word for word in line.split()), line  # no word cut
    screen_ = s.render(80)
    assert f"id {records[0]['id']})" in screen_ and "Guess (out-of-fold): favor" in screen_
    assert "Document: Why Washington and Beijing" in screen_ and "Seems to Be Falling Apart" in screen_
    assert screen_.splitlines()[0] == "stance label | annotator jane.the-a…-desk-0123 | 0 saved this session | 24 to go"


def test_shorten_middle_keeps_both_ends_and_whole_words():
    assert shorten_middle("short", 10) == "short"
    assert shorten_middle("/data/projects/stance/labels/jane.csv", 20) == "/data/proj…/jane.csv"
    cut = shorten_middle("one two three four five six seven eight nine ten", 30)
    assert len(cut) <= 30 and cut.startswith("one two three") and cut.endswith("nine ten") and " … " in cut
    assert len(shorten_middle("中" * 30, 21).encode("utf-16-le")) // 2 <= 21


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
    assert "Guess: not available" in screen(one) and "Guess: not available" in screen(two)  # no predictions.csv
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
