#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine from the repository root, after the parts that
# benchmarks/gpu_wheels.sh prepared were carried there (it prints the calls). Writes to
# $OUT (default /tmp/gpu-check):
#   gpu_check.log          everything printed, warnings included
#   nvidia-smi.txt         the GPU and its driver
#   gpu_infer.json         inference alone on CPU, CUDA (as pipelines run it, and with
#                          tensors kept on the GPU), TensorRT fp32 and fp16, batch 1
#                          and 8; decoding with and without hwaccel: cuda
#                          (benchmarks/gpu_infer.py)
#   efficiency-*.json      benchmarks.efficiency on CUDA, and on TensorRT fp16 when usable
#   gpu_limits.json        what limits the pipeline there (benchmarks/gpu_limits.py)
# Stays well inside a 10-minute call: on an H200 with 16 cores it took 130-136 s in all
# (4 s to unpack and install, 40 s for gpu_infer, about 90 s for the CUDA efficiency
# run), before gpu_limits was added (about a minute more, estimated). Exit 3: a part is missing (carry it again).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
GPU=.gpu
MODEL=/tmp/bundle/assets/yolov8n.onnx
CLIP=/tmp/bundle/assets/one-by-one-person-detection.mp4
section() { echo; echo "== $* ($(date +%T))"; }

section "parts"
if ! (cd "$GPU/parts" && sha256sum --quiet -c SHA256SUMS); then
    echo "missing or damaged parts (above): carry them again, then run this again"
    exit 3
fi
rm -rf /tmp/bundle /tmp/site
cat "$GPU"/parts/bundle.tar.part* | tar -C /tmp -xf - || exit 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site /tmp/bundle/wheels/*.whl || exit 4
# onnxruntime-gpu goes before the image's CPU onnxruntime; the repository is importable.
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/redis-root
for deb in /tmp/bundle/debs/*.deb; do dpkg -x "$deb" /tmp/redis-root; done
# CUDA 13 and cuDNN 9 come with the image's Python packages (nvidia-*), which are not on
# the loader's path; ONNX Runtime's CUDA provider links them by name.
nvidia_libs=$(python3 -c '
import glob, os, site
dirs = {os.path.dirname(p) for base in site.getsitepackages()
        for p in glob.glob(os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))')
export LD_LIBRARY_PATH=$nvidia_libs:/tmp/redis-root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/tmp/redis-root/usr/bin:$PATH
export XDG_CACHE_HOME=/tmp/cache  # TensorRT engines: a fresh cache, shared by the runs

section "machine"
nvidia-smi | tee "$OUT/nvidia-smi.txt"
python3 -c 'import onnxruntime as o, av; print("onnxruntime", o.__version__, o.get_available_providers()); print("av", av.__version__, av.codec.hwaccel.hwdevices_available())'
redis-server --version

section "inference alone and decoding"
timeout 300 python3 -m benchmarks.gpu_infer --model "$MODEL" --clip "$CLIP" \
    --batches 1 8 --seconds 3 --json "$OUT/gpu_infer.json"
echo "gpu_infer exit $?"

section "efficiency benchmark"
trt_usable=$(python3 -c '
import json, sys
rows = json.load(open(sys.argv[1]))["inference"]
print(any(r["run"] == "tensorrt fp16" and r.get("providers_in_use", ["?"])[0].startswith("Tensorrt") for r in rows))' \
    "$OUT/gpu_infer.json" 2>/dev/null)
runs=("cuda:--providers cuda")
if [[ $trt_usable == True ]]; then
    runs+=("tensorrt-fp16:--providers tensorrt --fp16")
else
    echo "TensorRT provider not usable here (see gpu_infer above): its efficiency run is skipped"
fi
for run in "${runs[@]}"; do
    name=${run%%:*}
    read -ra flags <<<"${run#*:}"
    section "efficiency: $name"
    timeout 300 python3 -m benchmarks.efficiency --model "$MODEL" --clip "$CLIP" \
        --frames 300 --batch 8 --most-sources 8 --work-dir /tmp/efficiency \
        --live-seconds 8 --overload-seconds 15 "${flags[@]}" --json "$OUT/efficiency-$name.json"
    echo "efficiency $name exit $?"
done

section "what limits the pipeline"
timeout 240 python3 -m benchmarks.gpu_limits --model "$MODEL" --clip "$CLIP" --providers cuda \
    --work-dir /tmp/efficiency --json "$OUT/gpu_limits.json"
echo "gpu_limits exit $?"
