"""What the bot says when it is not the model speaking; every text can be set in the environment."""

from __future__ import annotations

from dataclasses import dataclass

from common import config

DEFAULTS = {
    "SYSTEM_PROMPT": (
        "You are a helpful assistant answering on WhatsApp. Keep answers short, like a chat message: "
        "a few sentences of plain text, no headings or tables."
    ),
    "VOICE_PROMPT": (
        "Please summarize the following voice message in its original language "
        "as a list of bullet points:\n\n{transcript}"
    ),
    "HELP_TEXT": (
        "I answer text messages, voice notes, photos, PDF and text documents, locations and contacts."
        " Commands:\n"
        "/reset - forget our conversation and start over\n"
        "/help - show this message"
    ),
    "RESET_TEXT": "Done: I have forgotten our conversation. What would you like to talk about?",
    "UNSUPPORTED_TEXT": (
        "Sorry, I cannot read this kind of message. I understand text, voice notes, photos, "
        "stickers, PDF and text documents, locations and contacts."
    ),
    "VOICE_FAILED_TEXT": "Sorry, I could not understand that voice note. Could you send it again or type it?",
    "MODEL_ERROR_TEXT": "Sorry, I could not answer that just now. Please try again in a moment.",
    "IMAGE_PROMPT": (
        "Describe this image briefly. If it holds text (a receipt, a form, a screenshot), "
        "say what the text says."
    ),
    "DOCUMENT_PROMPT": "Summarize this document briefly.",
    "MEDIA_FAILED_TEXT": "Sorry, I could not download that file. Could you send it again?",
    "MEDIA_TOO_LARGE_TEXT": (
        "Sorry, that file is too large for me. I read images up to {image_mb} MB and documents "
        "up to {document_mb} MB and {pages} pages."
    ),
    "UNSUPPORTED_FILE_TEXT": (
        "Sorry, I cannot read that kind of file. I read photos (JPEG, PNG, WebP), stickers, "
        "PDF documents and text files (txt, csv, md, json)."
    ),
    "MEDIA_REFUSED_TEXT": "Sorry, I could not look at that file: the model I use does not accept it.",
}


@dataclass(frozen=True, slots=True)
class Texts:
    system_prompt: str
    voice_prompt: str
    voice_mode: str  # "summary" (the seed's behaviour) or "conversation"
    help: str
    reset: str
    unsupported: str
    voice_failed: str
    model_error: str
    image_prompt: str = DEFAULTS["IMAGE_PROMPT"]
    document_prompt: str = DEFAULTS["DOCUMENT_PROMPT"]
    media_failed: str = DEFAULTS["MEDIA_FAILED_TEXT"]
    media_too_large: str = DEFAULTS["MEDIA_TOO_LARGE_TEXT"]  # {image_mb} {document_mb} {pages}
    unsupported_file: str = DEFAULTS["UNSUPPORTED_FILE_TEXT"]
    media_refused: str = DEFAULTS["MEDIA_REFUSED_TEXT"]
    empty_answer: str = "…"

    @classmethod
    def from_env(cls) -> Texts:
        def text(name: str) -> str:
            return (config.get(name) or DEFAULTS[name]).replace("\\n", "\n")

        return cls(
            system_prompt=text("SYSTEM_PROMPT"),
            voice_prompt=text("VOICE_PROMPT"),
            voice_mode=(config.get("VOICE_MODE") or "summary").lower(),
            help=text("HELP_TEXT"),
            reset=text("RESET_TEXT"),
            unsupported=text("UNSUPPORTED_TEXT"),
            voice_failed=text("VOICE_FAILED_TEXT"),
            model_error=text("MODEL_ERROR_TEXT"),
            image_prompt=text("IMAGE_PROMPT"),
            document_prompt=text("DOCUMENT_PROMPT"),
            media_failed=text("MEDIA_FAILED_TEXT"),
            media_too_large=text("MEDIA_TOO_LARGE_TEXT"),
            unsupported_file=text("UNSUPPORTED_FILE_TEXT"),
            media_refused=text("MEDIA_REFUSED_TEXT"),
        )

    def voice_turn(self, transcript: str) -> str:
        """The user's turn for a voice note: a summary request, or the words themselves."""
        if self.voice_mode == "conversation":
            return transcript
        if "{transcript}" in self.voice_prompt:
            return self.voice_prompt.replace("{transcript}", transcript)
        return f"{self.voice_prompt}\n\n{transcript}"
