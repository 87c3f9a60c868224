"""The model and speech: chat completions, text to speech, voice notes to text, ffmpeg."""
