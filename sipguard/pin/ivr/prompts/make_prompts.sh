#!/bin/sh
# Regenerate the IVR prompts: 8 kHz mono 16-bit PCM WAV files.
# Needs espeak-ng and sox (apt-get install espeak-ng sox); the WAVs are committed,
# so this is only for changing the wording.
set -eu
cd "$(dirname "$0")"

say() {
    name=$1
    text=$2
    espeak-ng -v en-us -s 150 -w "$name.raw.wav" "$text"
    # Resample to 8 kHz mono 16-bit, a little headroom, 150 ms of silence at each end.
    sox "$name.raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" \
        gain -n -3 pad 0.15 0.15
    rm -f "$name.raw.wav"
}

say enter_pin "Please enter your PIN, then press hash."
say retry "That PIN is not correct. Please try again, then press hash."
say refused "Sorry, this call cannot be connected. Goodbye."
say connecting "Thank you. Connecting your call."
