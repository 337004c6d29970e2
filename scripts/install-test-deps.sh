#!/usr/bin/env bash
# Everything the test suite needs, on a fresh Debian or Ubuntu machine: README's test command runs
# this, then pytest. It stops at the first package that cannot be installed: a missing dependency
# would otherwise surface as a skipped test, and skipped tests fail the suite (tests/strict_skips.py).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist    # the fashion_mnist fixture (tests/conftest.py): demo, data and eval tests
  tuxpaint-stamps-default  # the tuxpaint_stamps fixture: the Tux Paint builder's tests, spoken digits, audio
  espeak-ng                # synthesised spoken digits (tether.data.spoken_digits, test_spoken_digits)
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k
  festvox-ca-ona-hts       # voices from real speakers for the spoken digits (tether.data.festival_digits)
  asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav
  asterisk-core-sounds-ru-wav asterisk-prompt-es-co asterisk-prompt-fr-armelle
  asterisk-prompt-it-menardi-wav  # real speakers saying the digits (tether.data.spoken_digits.asterisk_spoken_digits)
  g++                      # torch.compile's inductor backend builds C++ kernels (test_precision_compile)
  default-jre-headless     # pycocoevalcap's Java PTBTokenizer, compared with tether's (test_metrics_cider)
  chromium                 # Playwright drives it headless: the label review page and the search page (test_curate_label_job, test_search_web)
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v apt-get >/dev/null; then
  echo "install-test-deps: needs apt-get (Debian/Ubuntu) for: ${APT_PACKAGES[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null

# The CPU torch wheel first, so no dependency pulls a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,pretrained,data]"

# BasicMotions (real IMU recordings for tests/test_sensor_modalities.py) ships inside aeon's wheel;
# aeon itself is not installed (it pins an older pandas and pulls numba): tether reads the .ts files
# from the wheel kept in its cache (tether/data/basic_motions.py).
TETHER_WHEELS="${TETHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}/wheels"
python -m pip download -q --no-deps aeon==1.6.0 -d "$TETHER_WHEELS"
