#!/usr/bin/env bash
# bench-side-by-side.sh SIZE [STEPS] — seconds per denoising step and peak
# resident memory of bonsai-image and of the peer engines, one after another
# in one run on this machine (docs/PERFORMANCE.md).  It builds nothing: the
# peers are whatever binaries and weights the environment names, built by
# you beside the checkout (docs/PERFORMANCE.md says how they were built):
#
#   BONSAI_IMAGE     our CLI (default build/core/cli/bonsai-image)
#   SD_CLI_DEFAULT   stable-diffusion.cpp's sd-cli, default CMake options
#   SD_CLI_LLAMAFILE the same built with -DGGML_LLAMAFILE=ON
#   SD_MODELS        folder with flux2-klein-4b.safetensors (BFL names, bf16),
#                    flux2-vae.safetensors and qwen3-4b.safetensors
#   FLUX2C           antirez/flux2.c's `flux` (BLAS build)
#   FLUX2C_MODEL     its model folder (bf16 safetensors, diffusers layout)
#   SD_TYPES         sd.cpp weight types (default "bf16 q1_0 tq2_0")
#   ONLY             regex on "engine-build-type" to run a subset
#   PRECISIONS       ours, the first the reference of PSNR (default
#                    exact,bf16,int8,lut)
#
# A peer whose variable is unset is skipped, saying so.  Per-step times are
# the engines' own per-step figures (sd.cpp's s/it, flux2.c's "Step N: ms",
# our bench's step clock), so prompt encoding and VAE decode are not in
# them; peak RSS (GNU time, or our bench's child) is of the whole run.
# sd.cpp loads and converts the diffusion weights inside its first step, so
# its figure is the mean of steps 2..STEPS (STEPS >= 2, the default); ours
# opens the model before its step clock starts and runs 1 step.
set -u
SIZE=${1:?usage: bench-side-by-side.sh SIZE [STEPS]}
STEPS=${2:-2}
cd "$(dirname "$0")/.."
BONSAI_IMAGE=${BONSAI_IMAGE:-build/core/cli/bonsai-image}
THREADS=${THREADS:-$(nproc)}
PROMPT="a photo of a red fox in the snow"
LOGS=$(mktemp -d)
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time (apt-get install time)"; exit 2; }

printf '# %s  %dx%d, %d step(s), %d threads, %s\n' "$(date -Is)" "$SIZE" "$SIZE" "$STEPS" \
  "$THREADS" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '| %-12s | %-10s | %-14s | %8s | %8s |\n' engine build weights "s/step" "RSS GiB"
printf '|:-------------|:-----------|:---------------|---------:|---------:|\n'

row () { printf '| %-12s | %-10s | %-14s | %8s | %8s |\n' "$@"; }
wanted () { [ -z "${ONLY:-}" ] || [[ "$1" =~ $ONLY ]]; }
rss_gib () { grep -oE 'Maximum resident set size \(kbytes\): [0-9]+' "$1" | awk '{printf "%.2f", $NF/1048576}'; }

# Ours: bench pipeline measures each precision in its own child process.
for bits in 1 2; do
  name=$([ "$bits" = 1 ] && echo binary || echo ternary)
  wanted "bonsai-image-cpu-$name" || continue
  log=$LOGS/bonsai-$bits.log
  "$BONSAI_IMAGE" bench pipeline --bits "$bits" --size "$SIZE" --steps 1 \
    --threads "$THREADS" --precision "${PRECISIONS:-exact,bf16,int8,lut}" >"$log" 2>&1
  grep -E "^ +$SIZE×$SIZE" "$log" | while read -r _ prec sstep _; do
    rss=$(grep -E "^ +$SIZE×$SIZE +$prec " "$log" | grep -oE 'peak RSS [0-9]+ MiB' | awk '{printf "%.2f", $3/1024}')
    row bonsai-image "x $prec" "$name MLX" "$sstep" "$rss"
  done
done

# stable-diffusion.cpp: per-step "N/M - X s/it" (or it/s) in its progress bar.
for build in default llamafile; do
  var=$([ $build = default ] && echo SD_CLI_DEFAULT || echo SD_CLI_LLAMAFILE)
  bin=${!var:-}
  for type in ${SD_TYPES:-bf16 q1_0 tq2_0}; do
    wanted "sd.cpp-$build-$type" || continue
    if [ -z "$bin" ] || [ -z "${SD_MODELS:-}" ]; then
      row sd.cpp "$build" "$type" "skipped" "($var, SD_MODELS)"; continue
    fi
    log=$LOGS/sd-$build-$type.log
    $TIME -v "$bin" --diffusion-model "$SD_MODELS/flux2-klein-4b.safetensors" \
      --vae "$SD_MODELS/flux2-vae.safetensors" --llm "$SD_MODELS/qwen3-4b.safetensors" \
      --type "$type" -p "$PROMPT" -W "$SIZE" -H "$SIZE" --steps "$STEPS" --cfg-scale 1.0 \
      --sampling-method euler -s 42 -t "$THREADS" -o "$LOGS/sd-$build-$type.png" >"$log" 2>&1
    sstep=$(tr '\r' '\n' <"$log" | grep -oE "[0-9]+/$STEPS - [0-9.]+(s/it|it/s)" | grep -v '^0/' |
            awk -v steps="$STEPS" '{split($1, k, "/"); v=$3
                 if (v ~ /it\/s$/) {sub(/it\/s$/,"",v); v=1/v} else sub(/s\/it$/,"",v)
                 if (steps < 2 || k[1] > 1) s[k[1]]=v}
                 END {n=0; t=0; for (i in s) {t+=s[i]; n++} if (n) printf "%.1f", t/n; else print "failed"}')
    row sd.cpp "$build" "$type" "$sstep" "$(rss_gib "$log")"
  done
done

# flux2.c: "Step N: X ms" with -v.
if wanted "flux2.c-blas-bf16"; then
  if [ -z "${FLUX2C:-}" ] || [ -z "${FLUX2C_MODEL:-}" ]; then
    row flux2.c blas bf16 skipped "(FLUX2C, FLUX2C_MODEL)"
  else
    log=$LOGS/flux2c.log
    $TIME -v "$FLUX2C" -d "$FLUX2C_MODEL" -p "$PROMPT" -W "$SIZE" -H "$SIZE" -s "$STEPS" -g 1.0 \
      -S 42 -v -o "$LOGS/flux2c.png" >"$log" 2>&1
    sstep=$(grep -oE '^ *Step [0-9]+: [0-9.]+ ms' "$log" |
            awk '{t+=$3; n++} END {if (n) printf "%.1f", t/n/1000; else print "failed"}')
    row flux2.c blas bf16 "$sstep" "$(rss_gib "$log")"
  fi
fi
echo "logs: $LOGS"
