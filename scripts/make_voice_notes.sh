#!/usr/bin/env bash
# Regenerate the small synthetic WhatsApp-style voice notes in tests/audio/.
#   - TTS: espeak-ng (apt-get install -y espeak-ng)
#   - Encoder: the ffmpeg binary bundled in the imageio-ffmpeg wheel (found via the venv's python)
# Output is deterministic: same text + settings + tool versions => byte-identical files
# (bitexact flags, no metadata, fixed Ogg serial numbers).
# Settings were chosen so offline pocketsphinx recognises the English notes word-for-word.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT_DIR:-$ROOT/tests/audio}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

EN_VOICE="${EN_VOICE:-en-us}"   # espeak-ng voice for English notes
ES_VOICE="${ES_VOICE:-es}"      # espeak-ng voice for Spanish note
SPEED="${SPEED:-160}"           # words per minute (espeak-ng -s)
GAP="${GAP:-0}"                 # extra gap between words, 10 ms units (espeak-ng -g)
RATE=16000                      # WhatsApp voice notes: Opus, mono, 16 kHz
BITRATE=16k

EN_WEATHER="What is the weather like in London tomorrow morning"
EN_REMINDER="Please remind me to call my mother at seven"
ES_GREETING="Hola, buenos días, ¿cómo estás hoy?"

if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "error: espeak-ng not found. Install it with:  apt-get update && apt-get install -y espeak-ng" >&2
  exit 1
fi
if [ ! -x "$PY" ]; then
  echo "error: python not found at $PY (create the venv or set PYTHON=...)" >&2
  exit 1
fi
if ! FFMPEG="$("$PY" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null)"; then
  echo "error: imageio-ffmpeg not importable from $PY (pip install imageio-ffmpeg)" >&2
  exit 1
fi

mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

ff() { "$FFMPEG" -hide_banner -loglevel error -nostdin -y "$@"; }
COMMON=(-map_metadata -1 -fflags +bitexact -flags:a +bitexact -ac 1 -ar "$RATE")

tts() { # voice text wav
  espeak-ng -v "$1" -s "$SPEED" -g "$GAP" -w "$3" "$2"
}
to_ogg() { # wav ogg   (Opus in Ogg, like WhatsApp PTT notes)
  ff -i "$1" "${COMMON[@]}" -c:a libopus -b:a "$BITRATE" -vbr on -application voip \
     -frame_duration 20 "$2"
}

tts "$EN_VOICE" "$EN_WEATHER"  "$TMP/en_weather.wav"
tts "$EN_VOICE" "$EN_REMINDER" "$TMP/en_reminder.wav"
tts "$ES_VOICE" "$ES_GREETING" "$TMP/es_greeting.wav"

to_ogg "$TMP/en_weather.wav"  "$OUT/en_weather.ogg"
to_ogg "$TMP/en_reminder.wav" "$OUT/en_reminder.ogg"
to_ogg "$TMP/es_greeting.wav" "$OUT/es_greeting.ogg"

# Non-OGG formats WhatsApp may deliver: AAC in MP4/M4A, and AMR-NB (8 kHz) if the encoder exists.
ff -i "$TMP/en_weather.wav" "${COMMON[@]}" -c:a aac -b:a 24k -f ipod "$OUT/en_weather.m4a"
FILES=(en_weather.ogg en_reminder.ogg es_greeting.ogg en_weather.m4a)
ENCODERS="$("$FFMPEG" -hide_banner -encoders 2>/dev/null || true)"
if grep -q libopencore_amrnb <<<"$ENCODERS"; then
  ff -i "$TMP/en_weather.wav" -map_metadata -1 -fflags +bitexact -flags:a +bitexact \
     -ac 1 -ar 8000 -c:a libopencore_amrnb -b:a 12.2k "$OUT/en_weather.amr"
  FILES+=(en_weather.amr)
else
  rm -f "$OUT/en_weather.amr"
  echo "note: this ffmpeg has no libopencore_amrnb encoder; skipping en_weather.amr" >&2
fi

# transcripts.json: exact spoken text + language per file
"$PY" - "$OUT/transcripts.json" "$EN_WEATHER" "$EN_REMINDER" "$ES_GREETING" "$EN_VOICE" "$ES_VOICE" "$SPEED" "$GAP" "${FILES[@]}" <<'PYEOF'
import json, sys
out, en_w, en_r, es_g, en_v, es_v, speed, gap, *files = sys.argv[1:]
text = {"en_weather": (en_w, "en", en_v), "en_reminder": (en_r, "en", en_v),
        "es_greeting": (es_g, "es", es_v)}
data = {}
for f in files:
    t, lang, voice = text[f.rsplit(".", 1)[0]]
    data[f] = {"text": t, "language": lang, "espeak_voice": voice,
               "espeak_speed": int(speed), "espeak_gap": int(gap)}
with open(out, "w", encoding="utf-8") as fh:
    json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=True)
    fh.write("\n")
PYEOF

for f in "${FILES[@]}" transcripts.json; do
  printf '%8d  %s\n' "$(stat -c %s "$OUT/$f")" "$OUT/$f"
done
