"""Voice replies through the real responder (functions-framework, Firestore emulator) with the
loopback OpenAI (chat + speech) and Graph (upload + send) stand-ins."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import imageio_ffmpeg
import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope, MediaRef
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionError, FunctionProcess, serve
from tests.conftest import stand_in_env
from tests.support.delivery import deliver, killer, redeliver_until_answered
from tests.support.fakes import SPEECH, FakeGraph, FakeOpenAI, graph_error

BUSINESS = "106540352242922"
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "20", "CLAIM_LEASE_SECONDS": "21", "CLAIM_LEASE_MARGIN_SECONDS": "1"}
VOICE_NOTE_LIMIT = 512 * 1024  # WhatsApp's voice-note player
TTS_ERROR = {
    "error": {"message": "voice not found", "type": "invalid_request_error", "code": "invalid_value"}
}


def responder_with(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, **extra: str
) -> FunctionProcess:
    return serve(
        "responder", stand_in_env(emulators, graph, model, OPENAI_MODEL="test-model", **TIMING, **extra)
    )


@pytest.fixture(scope="module")
def voiced(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = responder_with(emulators, graph, model, VOICE_REPLY="voice", VOICE_REPLY_MAX_CHARS="300")
    yield function
    function.stop()


@pytest.fixture(scope="module")
def both(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = responder_with(emulators, graph, model, VOICE_REPLY="both", TTS_VOICE="coral")
    yield function
    function.stop()


@pytest.fixture(scope="module")
def plain(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = responder_with(emulators, graph, model)  # VOICE_REPLY unset: text
    yield function
    function.stop()


def note(words: str, user: str = "15550004444") -> Envelope:
    """A voice note as the transcriber hands it on: type audio, its transcript as the text."""
    media = MediaRef("1234567890", "audio/ogg; codecs=opus", voice=True)
    return Envelope(
        f"wamid.{uuid.uuid4().hex}",
        user,
        user,
        BUSINESS,
        "audio",
        int(time.time()),
        words,
        media=media,
        transcript=True,
    )


def typed(words: str, user: str = "15550004444") -> Envelope:
    return Envelope(f"wamid.{uuid.uuid4().hex}", user, user, BUSINESS, "text", int(time.time()), words)


def assistant_turns(db: firestore.Client, user: str) -> list[str]:
    turns = (db.collection("conversations").document(doc_id(user)).get().to_dict() or {}).get("turns", [])
    return [t["content"] for t in turns if t["role"] == "assistant"]


def probe(data: bytes) -> str:
    """What ffmpeg itself says the bytes are (container and stream), not our own parser."""
    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", "pipe:0"],
        input=data,
        capture_output=True,
        timeout=30,
    )
    return done.stderr.decode(errors="replace")


def assert_mono_ogg_opus(data: bytes) -> None:
    assert data[:4] == b"OggS"  # the container's capture pattern
    start = 27 + data[26]
    assert data[start : start + 8] == b"OpusHead"  # the codec's identification header
    assert data[start + 9] == 1  # channel count
    said = probe(data)
    assert "Input #0, ogg" in said and "Audio: opus" in said and "mono" in said, said
    assert len(data) < VOICE_NOTE_LIMIT


def test_voice_mode_answers_a_voice_note_with_one_quoted_voice_note(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = note("what is the weather like")
    assert deliver(voiced, envelope) == 200
    [upload] = graph.uploads()
    [message] = graph.messages()
    assert message["type"] == "audio"
    assert message["context"] == {"message_id": envelope.message_id}
    assert message["audio"]["voice"] is True
    assert message["to"] == envelope.to
    data = upload["file"][1]
    assert_mono_ogg_opus(data)
    assert upload["type"][1] == b"audio/ogg" and upload["messaging_product"][1] == b"whatsapp"
    assert graph.media[message["audio"]["id"]][0] == data  # the uploaded file is the one sent
    assert data == model.speech  # already a mono OGG/Opus voice note: sent as the service made it
    [speech] = model.speeches()
    assert speech["model"] == "gpt-4o-mini-tts" and speech["response_format"] == "opus"
    assert "instructions" not in speech  # TTS_INSTRUCTIONS unset
    assert assistant_turns(db, envelope.user) == [speech["input"]]  # what was spoken is the history


def test_a_typed_message_is_answered_in_text_even_in_voice_mode(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(voiced, typed("hello")) == 200
    assert [m["type"] for m in graph.messages()] == ["text"]
    assert model.speeches() == [] and graph.uploads() == []


def test_speech_that_is_not_a_mono_ogg_opus_file_is_reencoded(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    stereo_wav = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(SPEECH), "-ac", "2", "-f", "wav", "pipe:1"],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    assert "stereo" in probe(stereo_wav)
    model.speech = stereo_wav
    assert deliver(voiced, note("say it in stereo")) == 200
    [upload] = graph.uploads()
    assert_mono_ogg_opus(upload["file"][1])
    assert [m["type"] for m in graph.messages()] == ["audio"]


def test_both_sends_the_voice_note_then_the_text(
    both: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = note("tell me a joke")
    assert deliver(both, envelope) == 200
    audio, text = graph.messages()
    assert (audio["type"], text["type"]) == ("audio", "text")
    assert audio["context"] == {"message_id": envelope.message_id}
    assert text["text"]["body"] == model.speeches()[0]["input"] == assistant_turns(db, envelope.user)[0]
    assert model.speeches()[0]["voice"] == "coral"  # TTS_VOICE


def test_voice_on_switches_voice_replies_on_for_that_user_only(
    plain: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    alice, bob = "15550005555", "15550006666"
    assert deliver(plain, typed("/Voice  ON", user=alice)) == 200
    assert graph.sent()[-1]["text"]["body"].startswith("Voice replies on")
    assert deliver(plain, note("alice speaks", user=alice)) == 200
    assert deliver(plain, note("bob speaks", user=bob)) == 200
    kinds = [(m["to"], m["type"]) for m in graph.messages()]
    assert kinds == [(alice, "text"), (alice, "audio"), (bob, "text")]
    assert len(model.speeches()) == 1
    assert deliver(plain, typed("/voice off", user=alice)) == 200
    assert deliver(plain, note("alice again", user=alice)) == 200
    assert [m["type"] for m in graph.messages()[-2:]] == ["text", "text"]
    assert len(model.speeches()) == 1


def test_reset_forgets_the_voice_choice_with_the_conversation(
    plain: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    carol = "15550007777"
    assert deliver(plain, typed("/voice on", user=carol)) == 200
    assert deliver(plain, typed("/reset", user=carol)) == 200
    assert deliver(plain, note("carol speaks", user=carol)) == 200
    assert [m["type"] for m in graph.messages()] == ["text", "text", "text"]  # VOICE_REPLY=text again
    assert model.speeches() == []


def test_a_long_answer_speaks_the_first_part_and_writes_the_rest(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    answer = " ".join(f"Sentence number {i} is part of a long answer." for i in range(25))
    assert len(answer) > 900
    model.answer = lambda messages: answer
    envelope = note("tell me everything")
    assert deliver(voiced, envelope) == 200
    audio, *texts = graph.messages()
    assert audio["type"] == "audio" and [t["type"] for t in texts] == ["text"]
    spoken = model.speeches()[0]["input"]
    assert len(spoken) <= 300 and spoken.rstrip().endswith(".")  # VOICE_REPLY_MAX_CHARS, a sentence end
    assert spoken + texts[0]["text"]["body"] == answer  # nothing lost, nothing said twice
    assert "context" not in texts[0]
    assert assistant_turns(db, envelope.user) == [answer]


def test_speech_refused_falls_back_to_text(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/audio/speech", 400, TTS_ERROR, times=5)
    envelope = note("can you hear me")
    assert deliver(voiced, envelope) == 200
    assert graph.uploads() == []
    [sent] = graph.messages()
    assert sent["type"] == "text" and sent["context"] == {"message_id": envelope.message_id}
    assert sent["text"]["body"] == assistant_turns(db, envelope.user)[0]
    assert len(model.speeches()) == 1  # a 4xx is not retried
    assert "speech failed: answering in text" in voiced.log_text()


@pytest.mark.parametrize("mode", ["voiced", "both"])
def test_an_upload_meta_refuses_for_good_is_written_instead(
    request: pytest.FixtureRequest, mode: str, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """A non-retriable Graph error on the voice note's upload (131053) drops nothing: `voice`
    writes what it would have spoken, then the rest; `both` sends its text as always."""
    function: FunctionProcess = request.getfixturevalue(mode)
    answer = " ".join(f"Sentence number {i} is part of a long answer." for i in range(25))
    model.answer = lambda messages: answer
    graph.fail("/media", 400, graph_error(131053, "Media upload error"), times=5)
    envelope = note("tell me everything")
    assert deliver(function, envelope) == 200
    assert deliver(function, envelope) == 200  # a redelivery: done, nothing more
    sent = graph.messages()
    assert [m["type"] for m in sent] == ["text"] * len(sent) and graph.uploads() == []
    assert "".join(m["text"]["body"] for m in sent) == answer  # the whole answer, once
    assert sent[0]["context"] == {"message_id": envelope.message_id}
    assert len(model.speeches()) == 1 and len(model.chats()) == 1
    assert "voice note refused: answering in text" in function.log_text()


def test_speech_503_then_ok_gives_one_voice_reply(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/audio/speech", 503, {"error": {"message": "overloaded", "type": "server_error"}})
    assert deliver(voiced, note("are you there")) == 200
    assert len(model.speeches()) == 2
    assert len(graph.uploads()) == 1
    assert [m["type"] for m in graph.messages()] == ["audio"]


def test_speech_down_is_redelivered_and_answered_later(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/audio/speech", 503, {"error": {"message": "overloaded"}}, times=3)  # every retry
    envelope = note("anyone there")
    assert deliver(voiced, envelope) == 500
    assert graph.messages() == []
    assert deliver(voiced, envelope) == 200
    assert [m["type"] for m in graph.messages()] == ["audio"]
    assert len(model.chats()) == 1  # the stored reply was spoken, the model not asked again


def test_a_redelivery_after_the_upload_sends_that_upload_once(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    graph.fail("/messages", 200, {"success": True})  # the read receipt passes
    graph.fail("/messages", 503, {"error": {"message": "unavailable"}})  # the audio message fails
    envelope = note("send it once")
    assert deliver(voiced, envelope) == 500
    assert len(graph.uploads()) == 1
    assert deliver(voiced, envelope) == 200
    assert deliver(voiced, envelope) == 200  # and once more: done
    [upload] = graph.uploads()  # no second upload
    assert len(model.speeches()) == 1  # nor a second synthesis
    [audio] = graph.audios()
    assert graph.media[audio["audio"]["id"]][0] == upload["file"][1]
    assert audio["context"] == {"message_id": envelope.message_id}


def test_both_a_failure_after_the_voice_note_resends_only_the_text(
    both: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    graph.fail("/messages", 200, {"success": True})  # the read receipt
    graph.fail("/messages", 200, {"messages": [{"id": "wamid.OUT1"}]})  # the voice note is accepted
    graph.fail("/messages", 503, {"error": {"message": "unavailable"}})  # the text fails
    envelope = note("half way")
    assert deliver(both, envelope) == 500
    assert deliver(both, envelope) == 200
    accepted = [r.json() for r in graph.requests if r.path.endswith("/messages") and r.status == 200]
    sends = [m["type"] for m in accepted if m.get("status") != "read"]
    assert sends == ["audio", "text"]  # the voice note once (part 1 counted), then the text once
    assert len(graph.uploads()) == 1 and len(model.speeches()) == 1


def test_a_voice_setting_the_responder_cannot_act_on_is_refused_at_start(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI
) -> None:
    with pytest.raises(FunctionError) as refused:
        responder_with(emulators, graph, model, VOICE_REPLY="loud").stop()
    assert "VOICE_REPLY must be one of text, voice, both" in str(refused.value)


def test_a_crash_between_upload_and_send_still_sends_one_voice_note(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """No release after a crash: the retry speaks and uploads again (documented), and sends once."""
    short = {"ATTEMPT_TIMEOUT_SECONDS": "8", "CLAIM_LEASE_SECONDS": "9", "CLAIM_LEASE_MARGIN_SECONDS": "1"}
    env = stand_in_env(emulators, graph, model, OPENAI_MODEL="test-model", VOICE_REPLY="voice", **short)
    doomed, rescuer = serve("responder", env), serve("responder", env)
    try:
        graph.on(lambda r: r.path.endswith("/media"), killer(doomed), after_answer=True)
        envelope = note("crash after the upload")
        assert deliver(doomed, envelope) == 0  # the connection died with the process
        assert len(graph.uploads()) == 1 and graph.audios() == []
        codes = redeliver_until_answered(rescuer, envelope)  # 500 while the dead attempt's lease runs
        assert codes[-1] == 200
        assert deliver(rescuer, envelope) == 200
    finally:
        doomed.stop()
        rescuer.stop()
    [audio] = graph.audios()
    assert len(graph.uploads()) == 2
    assert graph.media[audio["audio"]["id"]][0] == graph.uploads()[1]["file"][1]
    assert len(model.chats()) == 1  # the stored reply was spoken again, the model not asked again
